"""emgan_monai.io"""
