"""FCN models: Caffe-exact FCN-32s/16s/8s on VGG16 / AlexNet / GoogLeNet, weight conversion, stats, files."""

from .fcn import FCN, LateFusion, bilinear_kernel, build_fcn, build_late_fusion, freeze_except_score
from .io import build_from_arch, load_model, save_model
from .meta import ModelMeta
from .preprocessing import (
    CAFFE_VGG,
    DEPTH_LOG,
    HHA,
    NYUD_RGB_CAFFE,
    PRESETS,
    SIFTFLOW_CAFFE,
    TORCHVISION,
    TORCHVISION_GOOGLENET,
    Preprocessing,
)
from .stats import net_stats
from .surgery import (
    convert_fcn_caffemodel,
    convert_imagenet,
    convert_imagenet_file,
    init_from_imagenet,
    staged_init,
)

__all__ = [
    "FCN", "LateFusion", "bilinear_kernel", "build_fcn", "build_late_fusion", "freeze_except_score",
    "build_from_arch", "convert_fcn_caffemodel", "load_model", "save_model", "net_stats", "convert_imagenet",
    "convert_imagenet_file", "ModelMeta",
    "init_from_imagenet", "staged_init", "Preprocessing", "PRESETS", "CAFFE_VGG", "TORCHVISION",
    "NYUD_RGB_CAFFE", "HHA", "DEPTH_LOG", "SIFTFLOW_CAFFE", "TORCHVISION_GOOGLENET",
]
