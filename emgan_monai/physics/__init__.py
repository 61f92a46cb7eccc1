"""emgan_monai.physics"""
