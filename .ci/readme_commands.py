"""Print the commands of one section of README.md: the first ```sh block under the heading `## SECTION`.

    python .ci/readme_commands.py Install      # what .ci/run runs first, exactly as a newcomer reads it
"""
import re, sys
from pathlib import Path

section = sys.argv[1] if len(sys.argv) > 1 else 'Install'
readme = (Path(__file__).resolve().parents[1]/'README.md').read_text()
m = re.search(rf'^## {re.escape(section)}\n(.*?)(?=^## |\Z)', readme, re.S | re.M)
block = m and re.search(r'^```sh\n(.*?)^```', m.group(1), re.S | re.M)
if not block: sys.exit(f"README.md: no ```sh block under '## {section}'")
print(block.group(1), end='')
