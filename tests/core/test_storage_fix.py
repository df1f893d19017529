"""The storage fix Phoenix suggests is one `pvesm set` that keeps the storage's content types and adds every one the
build needs: `--content` replaces the list, so one command per missing type would switch the other off again."""

from __future__ import annotations

import re

from phoenix.kinds.vm.checks import content_fix, content_problem

from .conftest import Checkout


def test_one_command_keeps_what_is_there_and_adds_what_is_missing():
    store = {"storage": "local", "content": "iso,vztmpl,backup"}
    assert content_fix(store, {"snippets", "import"}) == "pvesm set local --content iso,vztmpl,backup,import,snippets"
    assert content_fix(store, {"iso", "snippets"}) == "pvesm set local --content iso,vztmpl,backup,snippets"
    [said] = content_problem([store], "local", "snippets", "cloud-init snippets", frozenset({"import", "snippets"}))
    assert "pvesm set local --content iso,vztmpl,backup,import,snippets" in said


def test_a_storage_missing_snippets_and_import_gets_one_command(vm_checkout: Checkout):
    co = vm_checkout
    co.pve.storages["local"]["content"] = "iso,vztmpl,backup"
    mark = co.mark()
    result = co.doit("vm9000")
    assert result.rc == 1 and "Traceback" not in result.output, result.output
    assert "does not allow 'snippets' content" in result.output and "does not allow 'import' content" in result.output
    commands = set(re.findall(r"pvesm set \S+ --content \S+?(?=,? |\))", result.output))
    assert commands == {"pvesm set local --content iso,vztmpl,backup,import,snippets"}, result.output
    assert co.writes(mark) == []  # stopped before any write
