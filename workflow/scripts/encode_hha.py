"""Encode every NYUD depth map of every split as HHA; the manifest is written last."""

from pathlib import Path

from fcnlib.data.dataset import load_dataset_meta, read_ids
from fcnlib.data.hha import CAMERAS, Camera, encode_dataset
from fcnlib.files.io import atomic_write_json, read_json, sha256_file
from fcnlib.pipeline.scripting import run


def depth_paths(dataset_json: Path, modality: str) -> list[Path]:
    # through the dataset loader's reader: paths kept inside the dataset, ids checked
    meta = load_dataset_meta(dataset_json)
    paths = set()
    for split in meta["splits"].values():
        spec = split["images"].get(modality)
        if spec is None:
            return []
        for i in read_ids(split["ids"]):
            paths.add(Path(spec["dir"]) / f"{i}{spec['ext']}")
    return sorted(paths)


def main(job):
    dataset_json = Path(job.input[0])
    meta = read_json(dataset_json)
    # A dataset may state its own intrinsics (the demo renders at a reduced size); else the preset.
    camera = Camera.from_dict(meta["camera"], dataset_json) if "camera" in meta else CAMERAS[job.params.camera]
    depth = depth_paths(dataset_json, "depth")
    raw = depth_paths(dataset_json, "rawdepth") or None
    scale = meta["splits"][next(iter(meta["splits"]))]["images"]["depth"].get("scale_m", job.params.depth_scale)
    out_dir = Path(job.output[0]).parent
    outs = encode_dataset(depth, out_dir, camera, float(scale), raw_paths=raw, workers=job.threads)
    atomic_write_json(job.output[0], {p.name: sha256_file(p) for p in outs})


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
