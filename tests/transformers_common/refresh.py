"""Vendor transformers' common test files of one release from its source distribution on the package registry.

    python tests/transformers_common/refresh.py 5.26.0      # default: the installed transformers' version

Writes `tests/transformers_common/<version>/` with the three files byte for byte (see `__init__.py`), after checking
that the release's licence is still the Apache-2.0 text in `LICENSE` here.
"""

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


HERE = Path(__file__).resolve().parent
FILES = ("test_modeling_common.py", "test_configuration_common.py", "test_image_processing_common.py")
INIT = (
    "# test_configuration_common.py executes its own folder's __init__.py (transformers' direct_transformers_import):\n"
    "# it must exist, and do nothing.\n"
)


def main(argv=None):
    import transformers

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version", nargs="?", default=transformers.__version__, help="a transformers release")
    version = parser.parse_args(argv).version
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
             f"transformers=={version}", "--dest", tmp],
            check=True,
        )  # fmt: skip
        sdist = Path(tmp) / f"transformers-{version}.tar.gz"
        with tarfile.open(sdist) as archive:
            def member(path: str) -> bytes:
                name = f"transformers-{version}/{path}"
                try:
                    return archive.extractfile(name).read()
                except KeyError:
                    raise SystemExit(f"{sdist.name}: expected {name}; found no such file in the sdist.") from None

            if member("LICENSE") != (HERE / "LICENSE").read_bytes():
                raise SystemExit(f"{sdist.name}: expected the Apache-2.0 LICENSE vendored here; found another text.")
            folder = HERE / version
            folder.mkdir(exist_ok=True)
            for name in FILES:
                (folder / name).write_bytes(member(f"tests/{name}"))
            (folder / "__init__.py").write_text(INIT)
    print(f"Vendored transformers {version}'s common tests in {folder}. With that version installed, run")
    print("    python -m pytest tests/test_transformers_common.py")
    print("and add a stand-in (tests/transformers_common/tests/...) for any name it cannot import.")


if __name__ == "__main__":
    main()
