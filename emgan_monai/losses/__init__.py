"""emgan_monai.losses"""
