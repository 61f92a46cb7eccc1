"""emgan_monai.engines"""
