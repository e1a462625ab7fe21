"""The newcomer's door stays true: every file and test that README.md and docs/ cite exists, and
the worked example of docs/adding-a-feature.md is the module the tests use."""

import re

import pytest

from .conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# a path in the repository, and optionally one of its tests: keystroke_assets_tests/test_x.py::test_y
CITED = re.compile(r"(?:keystroke_assets|keystroke_assets_tests|benchmarks|deploy)/[\w/.-]+\.(?:py|yaml|md)(?:::\w+)?")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_cited_file_and_test_exists(doc):
    for reference in set(CITED.findall(doc.read_text())):
        path, _, test = reference.partition("::")
        assert (REPO / path).is_file(), f"{doc.name} cites {path}, which does not exist"
        if test:
            assert re.search(rf"^def {test}\(", (REPO / path).read_text(), re.M), f"{doc.name} cites {reference}"


def test_the_worked_example_is_the_module_the_tests_use():
    doc = (REPO / "docs" / "adding-a-feature.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", doc, re.S)
    module = (REPO / "keystroke_assets_tests" / "hold_by_key_class.py").read_text()
    code = module[module.index('"""', 3) + 3 :].strip()  # after the module's docstring

    def statements(text: str) -> list[str]:  # comments and blank lines aside
        return [
            line.split("  #")[0].rstrip()
            for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]

    assert statements(example) == statements(code)
