"""emgan_monai.data"""
