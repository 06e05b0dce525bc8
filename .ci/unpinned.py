"""Print pyproject.toml's build, runtime and test requirements without their version ranges,
one a line, markers kept: for these pip picks the newest release of each."""

import re
import tomllib
from pathlib import Path

pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
requirements = (pyproject["build-system"]["requires"] + pyproject["project"]["dependencies"]
                + pyproject["project"]["optional-dependencies"]["test"])
for requirement in requirements:
    name, _, marker = requirement.partition(";")
    bare = re.match(r"\s*([A-Za-z0-9._-]+)", name).group(1)
    print(f"{bare}; {marker.strip()}" if marker else bare)
