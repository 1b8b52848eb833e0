"""Datasets for IsoMax-family experiments: registry, embedded sets, files, archives, downloads.

Every dataset returns ``(normalised float32 [C, H, W], int label)`` (``-1`` for OOD sets) and
exposes its raw images (uint8, or float in [0, 1]) for :func:`to_tensors`, so a trainer can
keep a whole dataset on the GPU and normalise there with :func:`normalize`::

    from isomax.data import get_dataset, get_ood_dataset, to_tensors

    bundle = get_dataset("digits")                      # embedded, no download
    ood = get_ood_dataset("gaussian", like=bundle)      # shaped and normalised like digits
    x, y = bundle.raw("train")                          # raw [N, 1, 8, 8] float in [0, 1]
    x = bundle.normalize(x.cuda())                      # model input

Registry names: :func:`list_datasets` (in-distribution) and :func:`list_ood_datasets`; also
``"folder:PATH"``, folder paths and archive paths (see :func:`get_dataset`).
"""

from __future__ import annotations

from . import embedded as _embedded  # noqa: F401  (registers the embedded sets)
from . import standard as _standard  # noqa: F401  (registers the standard sets)
from .archive import ARCHIVE_SUFFIXES, extract_to_cache, is_archive, safe_extract
from .core import (
    AdaptedDataset,
    ImageDataset,
    SubsetDataset,
    TensorImageDataset,
    compute_mean_std,
    fit_image,
    normalize,
    to_tensors,
)
from .downloads import RemoteFile, default_cache_dir, download, file_digest, verify_checksum
from .embedded import NoiseDataset, PhotoPatchDataset
from .errors import (
    ChecksumError,
    CorruptImageError,
    DatasetNotFoundError,
    DownloadError,
    UnsafeArchiveError,
)
from .images import ImageFilesDataset, ImageFolderDataset, decode_image, find_images
from .inputs import load_images
from .registry import (
    DatasetBundle,
    as_ood,
    get_dataset,
    get_ood_dataset,
    list_datasets,
    list_ood_datasets,
    make_bundle,
    register_dataset,
    register_ood_dataset,
)
from .standard import RESOURCES, load_split, read_cifar_binary, read_idx, read_svhn_mat

__all__ = [
    "ARCHIVE_SUFFIXES",
    "RESOURCES",
    "AdaptedDataset",
    "ChecksumError",
    "CorruptImageError",
    "DatasetBundle",
    "DatasetNotFoundError",
    "DownloadError",
    "ImageDataset",
    "ImageFilesDataset",
    "ImageFolderDataset",
    "NoiseDataset",
    "PhotoPatchDataset",
    "RemoteFile",
    "SubsetDataset",
    "TensorImageDataset",
    "UnsafeArchiveError",
    "as_ood",
    "compute_mean_std",
    "decode_image",
    "default_cache_dir",
    "download",
    "extract_to_cache",
    "file_digest",
    "find_images",
    "fit_image",
    "get_dataset",
    "get_ood_dataset",
    "is_archive",
    "list_datasets",
    "list_ood_datasets",
    "load_images",
    "load_split",
    "make_bundle",
    "normalize",
    "read_cifar_binary",
    "read_idx",
    "read_svhn_mat",
    "register_dataset",
    "register_ood_dataset",
    "safe_extract",
    "to_tensors",
    "verify_checksum",
]
