"""The image references of a compose file, Kubernetes manifest or Dockerfile, one per line (pin-images.sh, audit.sh).

    python3 deploy/local/image_refs.py FILE...
"""

import re
import sys

PATTERN = re.compile(r"(?m)^\s*(?:-\s+)?image:\s*[\"']?([^\s\"'#]+)|^FROM\s+(?:--platform=\S+\s+)?(\S+)")


def refs(text: str) -> list[str]:
    return [m.group(1) or m.group(2) for m in PATTERN.finditer(text)]


if __name__ == "__main__":
    for path in sys.argv[1:]:
        with open(path) as f:
            for ref in refs(f.read()):
                print(ref)
