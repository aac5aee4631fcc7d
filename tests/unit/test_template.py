"""The template's rename (src/mlops_recipes/template.py) and its one list of names (copier.yml's template_names)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops_recipes import template

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
COPIER_FILE = REPO_ROOT / "copier.yml"
ANSWERS_FILE = ".copier-answers.yml"  # in a rendered project: Copier's record of the answers, never renamed
ANSWERS_TEMPLATE = "{{ _copier_conf.answers_file }}.jinja"  # in the template: what renders it


def copier_config() -> dict[str, object]:
    config = yaml.safe_load(COPIER_FILE.read_text(encoding="utf-8"))
    assert isinstance(config, dict)
    return config


def template_names() -> dict[str, str]:
    names = copier_config()["template_names"]
    assert isinstance(names, dict)
    return names["default"]  # type: ignore[no-any-return]


def project_files() -> list[Path]:
    """What the template would copy: the tracked files plus new ones not ignored (another branch's, unmerged)."""
    result = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:  # a fresh render before `git init`
        pytest.fail(f"these checks list the project's files with git: git init first ({result.stderr.decode()})")
    listed = result.stdout.decode()
    names = sorted(set(listed.split("\0")) - {"", ANSWERS_FILE})
    return [Path(name) for name in names if (REPO_ROOT / name).is_file()]


# --- the rename ---------------------------------------------------------------------------------------------------


def test_names_are_renamed_as_tokens_longest_first_in_one_pass() -> None:
    mapping = {"alpha-beta": "gamma", "alpha": "beta", "Alpha Beta": "Delta"}

    text = "alpha-beta alpha alpha-beta-app alpha_beta alphabet xalpha alpha2 Alpha Beta contributors src/alpha/x.py"

    assert template.rename_text(text, mapping) == (
        "gamma beta gamma-app beta_beta alphabet xalpha alpha2 Delta contributors src/beta/x.py"
    )


def test_an_answer_holding_a_template_name_is_not_renamed_again() -> None:
    assert template.rename_text("pkg and model", {"pkg": "model_x", "model": "pkg"}) == "model_x and pkg"


def test_renames_keep_only_changed_names_and_refuse_missing_or_empty_answers() -> None:
    names = {"package_name": "old_pkg", "model_name": "old-model"}

    assert template.renames(names, {"package_name": "new_pkg", "model_name": "old-model"}) == {"old_pkg": "new_pkg"}
    with pytest.raises(template.TemplateError, match="no answer for 'model_name'"):
        template.renames(names, {"package_name": "new_pkg"})
    with pytest.raises(template.TemplateError, match="empty"):
        template.renames(names, {"package_name": " ", "model_name": "m"})


def test_rename_project_moves_paths_over_existing_files_and_leaves_the_rest(tmp_path: Path) -> None:
    (tmp_path / "src/old_pkg").mkdir(parents=True)
    (tmp_path / "src/old_pkg/cli.py").write_text("import old_pkg.core\n", encoding="utf-8")
    (tmp_path / "src/new_pkg").mkdir(parents=True)  # `copier update`: the project's renamed copy is already there
    (tmp_path / "src/new_pkg/cli.py").write_text("stale\n", encoding="utf-8")
    (tmp_path / "src/new_pkg/mine.py").write_text("old_pkg stays: not the template's file\n", encoding="utf-8")
    (tmp_path / "answers.yml").write_text("package_name: old_pkg\n", encoding="utf-8")
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfeold_pkg")
    files = [Path("src/old_pkg/cli.py"), Path("answers.yml"), Path("blob.bin"), Path("missing.txt")]

    changed = template.rename_project(tmp_path, files, {"old_pkg": "new_pkg"}, keep=[Path("answers.yml")])

    assert changed == 1
    assert not (tmp_path / "src/old_pkg").exists()
    assert (tmp_path / "src/new_pkg/cli.py").read_text(encoding="utf-8") == "import new_pkg.core\n"
    assert (tmp_path / "src/new_pkg/mine.py").read_text(encoding="utf-8").startswith("old_pkg stays")
    assert (tmp_path / "answers.yml").read_text(encoding="utf-8") == "package_name: old_pkg\n"
    assert (tmp_path / "blob.bin").read_bytes() == b"\xff\xfeold_pkg"


def test_the_command_refuses_names_without_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = template.main(
        [
            *("--template", str(tmp_path), "--answers-file", "a.yml", "--root", str(tmp_path)),
            *("--names", json.dumps({"package_name": "x"}), "--answers", "{}"),
        ]
    )

    assert code == 2
    assert "no answer for 'package_name'" in capsys.readouterr().err


def test_hand_written_variants_of_a_name_are_reported() -> None:
    text = "MY_PKG_HOME, my-pkg, my_pkg.core, mypkg, mypkgs, My Project, my project, my-project"

    assert template.uncovered(text, ["my_pkg", "My Project"]) == [
        "MY_PKG",
        "my-pkg",
        "mypkg",
        "my project",
        "my-project",
    ]


# --- the repository against its one list of names ------------------------------------------------------------------


def test_every_question_renames_a_template_name_and_the_task_finds_the_module() -> None:
    config = copier_config()
    questions = {key for key, value in config.items() if not key.startswith("_") and key != "template_names"}

    assert set(template_names()) == questions
    task = config["_tasks"][0]["command"]  # type: ignore[index]
    module = Path(task[1].replace("{{ _copier_conf.src_path }}/", ""))
    assert (REPO_ROOT / module).resolve() == Path(template.__file__).resolve()
    assert config["project_name"]["default"] == template_names()["project_name"]  # type: ignore[index]


def test_every_occurrence_of_a_template_name_is_one_the_rename_covers() -> None:
    """A file that mentions a templated name must spell it exactly, in a UTF-8 text file (docs/template.md)."""
    names = list(template_names().values())
    problems = []
    for relative in project_files():
        try:
            data = (REPO_ROOT / relative).read_bytes()
        except FileNotFoundError:  # gone since it was listed (a store's journal while `make run` writes beside)
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            if any(name.encode() in data for name in names):
                problems.append(f"{relative}: binary file holds a template name")
            continue
        problems += [f"{relative}: {spelling!r}" for spelling in template.uncovered(text, names)]
        problems += [f"{relative}: the path" for _ in template.uncovered(str(relative), names)]

    assert not problems, "spellings the rename misses (use the exact name, see docs/template.md):\n" + "\n".join(
        problems
    )


def test_no_file_is_a_jinja_template_but_the_answers_file() -> None:
    """Copier renders only ``*.jinja`` files: everything else, with its ``{{ }}``, is copied verbatim."""
    rendered = [path for path in project_files() if path.name.endswith(".jinja")]

    assert [path for path in rendered if path != Path(ANSWERS_TEMPLATE)] == []
