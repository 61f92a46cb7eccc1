"""emgan_monai.handlers"""
