"""emgan_monai.networks"""
