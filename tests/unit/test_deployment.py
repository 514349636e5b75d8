"""What ships: the Functions deployment holds exactly what the host runs, and `pip install .` gives
operators the `mccf-backup` command."""

from __future__ import annotations

import ast
import fnmatch
import os
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What the host loads: the app, its blueprints, their engine (imported on first use), the document the
# API serves, and the worker modules the engine runs as `python -m` processes.
ENTRY_POINTS = ["function_app", "functions.http_api", "functions.timer", "functions.queue", "mccf_backup.service"]
SUBPROCESS_MODULES = ["mccf_backup.verify_worker", "mccf_backup.inspect_worker"]
DATA_FILES = {"host.json", "requirements.txt", "functions/openapi.json"}


def ignored(path: str, patterns: list[str]) -> bool:
    """.funcignore's rules, as gitignore reads these simple forms: a name anywhere, a dir/ prefix, a glob."""
    parts = path.split("/")
    for pattern in patterns:
        if pattern.endswith("/"):
            name = pattern.rstrip("/")
            if any(fnmatch.fnmatch(part, name) for part in parts[:-1]):
                return True
        elif "/" in pattern:
            if fnmatch.fnmatch(path, pattern):
                return True
        elif any(fnmatch.fnmatch(part, pattern) for part in parts):
            return True
    return False


def deployed_files() -> set[str]:
    patterns = [
        line.strip()
        for line in (REPO / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # What `func azure functionapp publish` packs is the working tree: untracked files count too.
    listed = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(listed, cwd=REPO, capture_output=True, text=True, check=True).stdout
    return {path for path in files.splitlines() if not ignored(path, patterns) and (REPO / path).exists()}


def imported_closure() -> set[str]:
    """Every module of this repository reachable by imports from the entry points (static: the AST)."""
    seen: set[str] = set()
    todo = ENTRY_POINTS + SUBPROCESS_MODULES
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        path = REPO / (module.replace(".", "/") + ".py")
        if not path.exists():
            continue
        seen.add(module)
        package = module.rsplit(".", 1)[0] if "." in module else ""
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                todo.append(base)
                todo += [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
    for module in list(seen):  # a package's __init__ runs with any of its modules
        if "." in module:
            seen.add(module.rsplit(".", 1)[0] + ".__init__")
    return seen


def test_the_deployment_holds_exactly_what_the_host_runs():
    deployed = deployed_files()
    needed = {m.replace(".", "/") + ".py" for m in imported_closure()} & {
        p for p in deployed if p.endswith(".py")
    } | DATA_FILES
    assert deployed - needed == set(), "deployed but not needed: add them to .funcignore"
    modules = {
        m.replace(".", "/") + ".py" for m in imported_closure() if (REPO / (m.replace(".", "/") + ".py")).exists()
    }
    assert modules - deployed == set(), "needed at run time but left out of the deployment"
    assert {"function_app.py", "host.json", "requirements.txt", "mccf_backup/service.py"} <= deployed
    assert not {"mccf_backup/cli.py", "README.md", "pyproject.toml", "local.settings.sample.json"} & deployed


def test_pip_install_gives_the_mccf_backup_command(tmp_path):
    """In a fresh virtual environment, from a copy of the tracked files (no build output in the checkout)."""
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for path in tracked.splitlines():
        target = source / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO / path).read_bytes())
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # The package index's own certificate chain, not the emulator's CA other tests put in the environment.
    clean = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")}
    installed = subprocess.run([*pip, str(source)], capture_output=True, text=True, timeout=600, env=clean)
    assert installed.returncode == 0, installed.stderr[-3000:]
    helped = subprocess.run(
        [str(env_dir / "bin" / "mccf-backup"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert helped.stdout.startswith("usage: mccf-backup") and "restore" in helped.stdout and "pin" in helped.stdout
    module = subprocess.run([sys.executable, "-m", "mccf_backup", "--help"], cwd=REPO, capture_output=True, text=True)
    assert module.returncode == 0 and module.stdout.startswith("usage: python -m mccf_backup")
