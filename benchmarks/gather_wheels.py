"""The wheels benchmarks/gpu_suite.py needs besides torch, in one folder, for an air-gapped GPU box.

    .venv/bin/python benchmarks/gather_wheels.py                  # into .whl/ (git ignores it)
    .venv/bin/python benchmarks/gather_wheels.py --python-version 3.12 --dest /tmp/wheels
    .venv/bin/python benchmarks/gather_wheels.py --print-install  # how to install them there

Runs `pip download` where PyPI can be reached: moshi with `--no-deps` (pure Python; its own
requirements would bring torch, aiohttp, bitsandbytes and sounddevice, which the suite never
imports), then what the suite imports, with their dependencies: sentencepiece, safetensors,
numpy, einops, tqdm, sphn (moshi.models.tts; the STT checkpoint's clips), huggingface-hub
(moshi.models.loaders imports it at the top, even for a local checkpoint), pydantic
(deployments.settings) and nvidia-ml-py (NVML's memory figure; optional). The STT rows
(deployments/engine/stt.py, checkpoint_stt.py) need nothing more. Never torch: the box brings its
own, possibly newer than our pin.
Versions are those of the running interpreter's environment (the project's tested set) unless
`--unpinned`. Wheels only, for `--python-version` and `--platform` (defaults: this interpreter's
version, manylinux x86_64 with glibc 2.28 or older).

The folder gets a `requirements.txt` naming every wheel in it (with moshi's caps and
pyproject.toml's bounds, e.g. numpy<2.3, pydantic>=2.6), so that the install keeps what the box
already has where it fits and adds the rest from the folder:

    pip install --no-index --find-links .whl --no-deps -r .whl/requirements.txt
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO / ".whl"
MOSHI = "moshi"
MOSHI_PIN = "0.2.13"  # pyproject.toml's pin, whatever --unpinned says
# What the suite imports besides torch and moshi (their own dependencies follow).
RUNTIME = ["sentencepiece", "safetensors", "numpy", "einops", "tqdm", "sphn", "huggingface-hub",
           "pydantic", "nvidia-ml-py"]
# Never gathered: the box's torch stays, and moshi's requirements the suite does not import.
NEVER = {"torch", "triton", "aiohttp", "bitsandbytes", "sounddevice"}


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def platforms(platform: str) -> list[str]:
    """`manylinux_2_28_x86_64` -> every manylinux tag a glibc 2.28 box runs (2_28 down to 2_5 and
    the legacy aliases): pip takes `--platform` literally, and wheels name any of them."""
    match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not match:
        return [platform]
    glibc, arch = int(match.group(1)), match.group(2)
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc, 4, -1)]
    aliases = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags += [f"{alias}_{arch}" for minor, alias in aliases.items() if minor <= glibc]
    return tags


def pinned(name: str, unpinned: bool, caps: dict[str, str]) -> str:
    """`name==<installed version>` (the tested set), else `name<moshi's cap>`."""
    if not unpinned:
        try:
            return f"{name}=={importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            pass
    return name + specifier(name, caps)


def _requirement(text: str):
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors it
        from pip._vendor.packaging.requirements import Requirement
    return Requirement(text)


def moshi_caps(wheel: Path) -> dict[str, str]:
    """moshi's version specifiers per requirement (`numpy` -> `<2.3,>=1.26`), read from its wheel."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    requirements = [_requirement(line.split(":", 1)[1].strip()) for line in text.splitlines()
                    if line.startswith("Requires-Dist:")]
    return {_key(r.name): str(r.specifier) for r in requirements
            if r.marker is None or "extra" not in str(r.marker)}


def project_specs() -> dict[str, str]:
    """The specifiers of pyproject.toml's dependencies (`pydantic` -> `>=2.6`)."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11: moshi's caps only
        return {}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [_requirement(text) for text in project["dependencies"]]
    return {_key(r.name): str(r.specifier) for r in requirements}


def specifier(name: str, *sources: dict[str, str]) -> str:
    return ",".join(spec for source in sources for spec in [source.get(_key(name), "")] if spec)


def wheel_name(path: Path) -> str:
    """The project name of a wheel file (`pydantic_core-2.41.5-cp311-...whl` -> `pydantic-core`)."""
    return _key(path.name.split("-")[0])


def download(specs: list[str], dest: Path, args, no_deps: bool) -> None:
    command = [sys.executable, "-m", "pip", "download", "--dest", str(dest), "--only-binary=:all:",
               "--python-version", args.python_version, "--implementation", "cp",
               "--disable-pip-version-check"]
    for tag in platforms(args.platform):
        command += ["--platform", tag]
    if no_deps:
        command.append("--no-deps")
    print("+", " ".join(command + specs), flush=True)
    subprocess.run(command + specs, check=True)


def install_line(dest: Path) -> str:
    return f"pip install --no-index --find-links {dest} --no-deps -r {dest}/requirements.txt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="the folder (default: .whl/ in the repo)")
    parser.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                        help="the GPU box's Python, e.g. 3.12 (default: this interpreter's)")
    parser.add_argument("--platform", default="manylinux_2_28_x86_64",
                        help="the GPU box's platform tag (default manylinux_2_28_x86_64: glibc 2.28+, x86_64)")
    parser.add_argument("--unpinned", action="store_true",
                        help="newest versions within moshi's caps, not this environment's (e.g. for a newer Python)")
    parser.add_argument("--print-install", action="store_true", help="print the install command for the GPU box and exit")
    args = parser.parse_args(argv)
    dest = args.dest
    if args.print_install:
        print(install_line(dest.name if dest.parent == REPO else dest))
        return 0
    dest.mkdir(parents=True, exist_ok=True)
    download([f"{MOSHI}=={MOSHI_PIN}"], dest, args, no_deps=True)
    moshi_wheel = max(dest.glob("moshi-*.whl"))
    caps = moshi_caps(moshi_wheel)
    download([pinned(name, args.unpinned, caps) for name in RUNTIME], dest, args, no_deps=False)
    wheels = sorted(dest.glob("*.whl"))
    unwanted = [path for path in wheels if wheel_name(path) in NEVER or wheel_name(path).startswith("nvidia-")
                and wheel_name(path) != "nvidia-ml-py"]
    for path in unwanted:  # pulled in by a dependency: the box has its own
        print(f"removed {path.name} (the GPU box brings its own)")
        path.unlink()
    wheels = [path for path in wheels if path not in unwanted]
    names = sorted({wheel_name(path) for path in wheels})
    specs = project_specs()
    (dest / "requirements.txt").write_text(
        "# written by benchmarks/gather_wheels.py; install with --no-deps (see --print-install)\n"
        + "".join(f"{name}=={moshi_wheel.name.split('-')[1]}\n" if name == MOSHI
                  else f"{name}{specifier(name, specs, caps)}\n" for name in names))
    size = sum(path.stat().st_size for path in wheels) / 1e6
    print(f"\n{len(wheels)} wheels ({size:.0f} MB) in {dest} for Python {args.python_version}, {args.platform}:")
    for path in wheels:
        print(f"  {path.name}")
    print(f"\nOn the GPU box (torch installed), from the repo's copy:\n  {install_line(dest.name if dest.parent == REPO else dest)}"
          "\n  python benchmarks/gpu_suite.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
