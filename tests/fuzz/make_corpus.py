#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora, tests/fuzz/corpus/<target>/ (docs/hardening.md).

Small valid inputs of every format, plus a few near misses, so that libFuzzer starts past the first checks.
Needs only the standard library and Debian's libstb (its stbi_write_* functions, through ctypes, write the
PNG/JPEG/BMP/TGA/HDR seeds). Deterministic: rerunning rewrites the same bytes.

    python3 tests/fuzz/make_corpus.py
"""
import ctypes
import gzip
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
FMNIST = "/usr/share/datasets/fashion-mnist"


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pseudo_bytes(n, seed):
    """n bytes of a fixed linear congruential sequence (deterministic 'pixels')."""
    out, x = bytearray(), seed
    for _ in range(n):
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        out.append(x >> 24)
    return bytes(out)


def gz(data):
    return gzip.compress(data, mtime=0)


def idx(magic, dims, payload):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload


def idx_seeds():
    put("idx", "tiny-idx3", idx(0x803, [2, 3, 2], bytes(range(12))))
    put("idx", "tiny-idx1", idx(0x801, [3], bytes([0, 1, 2])))
    put("idx", "tiny-idx3.gz", gz(idx(0x803, [2, 3, 2], bytes(range(12)))))
    put("idx", "empty-idx3", idx(0x803, [0, 28, 28], b""))
    put("idx", "truncated-idx3", idx(0x803, [2, 3, 2], bytes(range(11))))
    # The first two Fashion-MNIST test images and labels, as the Debian package ships them (gzip).
    with gzip.open(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")) as f:
        head = f.read(16 + 2 * 784)
    put("idx", "fmnist-2-images.gz", gz(idx(0x803, [2, 28, 28], head[16:])))
    with gzip.open(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = f.read(8 + 2)
    put("idx", "fmnist-2-labels", idx(0x801, [2], labels[8:]))


def cifar_seeds():
    put("cifar", "cifar10-1-record.bin", bytes([3]) + pseudo_bytes(3072, 1))
    put("cifar", "cifar100-1-record.bin", bytes([7, 42]) + pseudo_bytes(3072, 2))
    put("cifar", "cifar10-bad-label.bin", bytes([200]) + pseudo_bytes(3072, 3))


def stl10_seeds():
    # Byte 0 picks the split and the image files' sizes (see run_stl10); the rest are labels 1..10.
    put("stl10", "train-3", bytes([0x01, 1, 5, 10]))
    put("stl10", "test-2", bytes([0x09, 2, 3]))
    put("stl10", "unlabeled-2", bytes([0x51]))
    put("stl10", "train+unlabeled", bytes([0x39, 4, 4]))
    put("stl10", "label-zero", bytes([0x01, 0]))


def image_seeds():
    stb = ctypes.CDLL("libstb.so.0")
    tmp = os.path.join(ROOT, ".tmp-image")
    w, h = 6, 4
    for comp in (1, 3, 4):
        px = pseudo_bytes(w * h * comp, comp)
        for ext, write in (("png", lambda p: stb.stbi_write_png(p, w, h, comp, px, w * comp)),
                           ("bmp", lambda p: stb.stbi_write_bmp(p, w, h, comp, px)),
                           ("tga", lambda p: stb.stbi_write_tga(p, w, h, comp, px)),
                           ("jpg", lambda p: stb.stbi_write_jpg(p, w, h, comp, px, 90))):
            assert write(tmp.encode()) != 0, f"stbi_write_{ext} failed"
            with open(tmp, "rb") as f:
                put("image", f"{w}x{h}x{comp}.{ext}", f.read())
    fpx = (ctypes.c_float * (w * h * 3))(*[i / (w * h * 3) for i in range(w * h * 3)])
    assert stb.stbi_write_hdr(tmp.encode(), w, h, 3, fpx) != 0
    with open(tmp, "rb") as f:
        put("image", f"{w}x{h}x3.hdr", f.read())
    os.remove(tmp)
    put("image", "3x2.ppm", b"P6\n3 2\n255\n" + pseudo_bytes(18, 9))
    put("image", "3x2.pgm", b"P5\n3 2\n255\n" + pseudo_bytes(6, 10))


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, bytes), in data order."""
    header, off = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors)


def config_json():
    # The fields of ssl/trainer/config.h's TrainConfig, as `selfsup train` writes config.json.
    return {"method": "simclr", "data": "fashion-mnist", "limit": 0, "arch": "resnet18", "width": 16,
            "stem": "cifar", "in_channels": 1, "image_size": 28, "proj_hidden": 512, "proj_dim": 128,
            "recipe": "gray", "crop_min": 0.2, "temperature": 0.2, "optimizer": "sgd", "lr": 0.3,
            "weight_decay": 0.0005, "momentum": 0.9, "warmup_fraction": 0.05, "batch": 256, "epochs": 10.0,
            "minutes": 0.0, "steps": 0, "total_steps": 2340, "device": "auto", "seed": 0, "threads": 0,
            "out": "runs/simclr", "log_every": 10, "checkpoint_minutes": 5.0, "knn_k": 200,
            "knn_train_limit": 10000, "knn_test_limit": 0, "knn_every_epoch": True}


def safetensors_seeds():
    f32 = struct.pack("<6f", *[0.5 * i for i in range(6)])
    put("safetensors", "f32-2x3", safetensors([("w", "F32", [2, 3], f32)], {"k": "v"}))
    put("safetensors", "mixed", safetensors([("a", "I64", [2], struct.pack("<2q", -1, 7)),
                                             ("b", "BF16", [1], b"\x80\x3f"), ("c", "BOOL", [2], b"\x01\x00"),
                                             ("d", "U8", [0], b"")]))
    with open(os.path.join(os.path.dirname(ROOT), "..", "fixtures", "torch_written.safetensors"), "rb") as f:
        put("safetensors", "torch_written", f.read())
    # A training checkpoint as engine/io/checkpoint.cpp writes it: prefixed tensors and its metadata.
    i64 = lambda v: struct.pack("<q", v)
    md = {"format": "selfsup.checkpoint", "format_version": "1", "step": "12", "epoch": "0",
          "config": json.dumps(config_json())}
    put("safetensors", "checkpoint", safetensors([
        ("loader.next", "I64", [], i64(12)), ("optim.step", "I64", [], i64(12)),
        ("rng.augment.offset", "I64", [], i64(3)), ("rng.augment.seed", "I64", [], i64(1)),
        ("rng.augment.stream", "I64", [], i64(2)), ("model.fc.weight", "F32", [1, 2], struct.pack("<2f", 1, 2))],
        md))


def config_seeds():
    put("config", "config.json", json.dumps(config_json(), indent=2).encode())
    put("config", "cifar10.json", json.dumps({"data": "cifar10:/data/cifar", "batch": 512, "lr": 0.6}).encode())
    put("config", "wrong-type.json", b'{"batch": "many", "seed": -1}')
    put("config", "not-object.json", b"[1, 2, 3]")


def args_seeds():
    put("args", "train", b"\0".join([b"--data", b"cifar10:/x", b"--integer-batch", b"256", b"--number-lr=0.3",
                                     b"--flag-no-knn", b"--out", b"runs/a"]))
    put("args", "help", b"--help\0-h")
    put("args", "bad-number", b"\0".join([b"--number-x", b" 1e999", b"--integer-y", b"12x"]))
    put("args", "twice", b"--out=a\0--out=b")
    put("args", "positional", b"train\0--steps")


if __name__ == "__main__":
    idx_seeds()
    cifar_seeds()
    stl10_seeds()
    image_seeds()
    safetensors_seeds()
    config_seeds()
    args_seeds()
