"""Models: MAE pre-training, the ViT classifier with checkpoint import, CNN baselines.

- ``mae``             ``MaskedAutoencoderViT`` / ``create_mae`` on timm's ViT blocks
- ``vit``             ``VIT_SIZES`` and ``create_vit_classifier`` (timm VisionTransformer)
- ``cnn``             ``create_cnn``: timm DenseNet-121 / ResNet-50
- ``checkpoints``     ``load_weights_file``: safe reading of .pth / .safetensors weights
- ``pos_embed``       the fixed 2-D sin-cos position embedding
- ``reconstruction``  ``reconstruction_panels`` for the report
"""

from explorer.models.checkpoints import load_weights_file
from explorer.models.cnn import CNN_ARCHS, create_cnn
from explorer.models.mae import MaskedAutoencoderViT, create_mae
from explorer.models.pos_embed import sincos_pos_embed_2d
from explorer.models.reconstruction import reconstruction_panels
from explorer.models.vit import VIT_SIZES, create_vit_classifier

__all__ = [
    "CNN_ARCHS",
    "VIT_SIZES",
    "MaskedAutoencoderViT",
    "create_cnn",
    "create_mae",
    "create_vit_classifier",
    "load_weights_file",
    "reconstruction_panels",
    "sincos_pos_embed_2d",
]
