"""emgan_monai.metrics"""
