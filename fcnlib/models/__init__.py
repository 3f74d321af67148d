"""FCN models: Caffe-exact FCN-32s/16s/8s on VGG16 / AlexNet / GoogLeNet, weight conversion, stats, files."""

from fcnlib.models.fcn import FCN, LateFusion, bilinear_kernel, build_fcn, build_late_fusion, freeze_except_score
from fcnlib.models.io import build_from_arch, load_model, save_model
from fcnlib.models.meta import ModelMeta
from fcnlib.models.preprocessing import (
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
from fcnlib.models.stats import net_stats
from fcnlib.models.surgery import (
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
