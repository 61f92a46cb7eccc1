"""emgan_monai.transforms"""
