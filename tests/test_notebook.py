"""examples/quickstart.ipynb runs top to bottom in a fresh kernel of this interpreter, as a user would run it.

The notebook is executed with nbclient in an empty temporary working directory, on a kernelspec written
for `sys.executable` (so the kernel imports the same installed `tf_twostage`), with a timeout per cell.
nbclient, nbformat and ipykernel come with the `test` extra: without them this test fails, it does not skip.
"""

import os
import re
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "examples", "quickstart.ipynb")
KERNEL_NAME = "tf-twostage-notebook-test"
CELL_TIMEOUT_S = 300
KERNEL_START_TIMEOUT_S = 120
MIN_FINAL_ACCURACY = 0.5  # a sanity bound: chance is 0.1, cross-entropy on these labels about 0.6
FIGURES = 3  # transition matrices, kept vs dropped images, learning curves


def _import_notebook_tools():
    try:
        import ipykernel.kernelspec  # noqa: F401  pylint: disable=import-outside-toplevel
        import nbclient  # pylint: disable=import-outside-toplevel
        import nbformat  # pylint: disable=import-outside-toplevel
    except ImportError as error:
        pytest.fail(
            f"running the example notebook needs nbclient, nbformat and ipykernel ({error}); "
            "install the test extra: pip install -e '.[test]'"
        )
    return nbclient, nbformat, ipykernel.kernelspec


def _text_outputs(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            parts.append(output.get("text", ""))
        elif output.get("output_type") in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_notebook_is_stored_without_outputs():
    _, nbformat, _ = _import_notebook_tools()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells
    for cell in code_cells:
        assert cell.outputs == [] and cell.execution_count is None, (
            f"clear the outputs of examples/quickstart.ipynb before committing (cell {cell.get('id')!r})"
        )


def test_quickstart_notebook_runs_and_reaches_a_sane_accuracy(tmp_path, monkeypatch):
    nbclient, nbformat, kernelspec = _import_notebook_tools()
    # A kernelspec naming this interpreter, found first on JUPYTER_PATH: not whatever "python3" resolves to.
    jupyter_dir = tmp_path / "jupyter"
    kernelspec.write_kernel_spec(path=str(jupyter_dir / "kernels" / KERNEL_NAME))
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_dir))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))  # Keras writes its config file on import
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    working_dir = tmp_path / "cwd"
    working_dir.mkdir()

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)"))  # which environment
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=KERNEL_START_TIMEOUT_S,
        resources={"metadata": {"path": str(working_dir)}},
    )
    started = time.monotonic()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"a cell of examples/quickstart.ipynb failed:\n{error}")
    elapsed = time.monotonic() - started

    prefix_cell, *cells = notebook.cells
    assert _text_outputs(prefix_cell).strip() == sys.prefix, "the kernel ran another Python environment"
    code_cells = [cell for cell in cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code_cells), "some cells did not run"
    errors = [output for cell in code_cells for output in cell.outputs if output.output_type == "error"]
    assert not errors, errors

    text = "\n".join(_text_outputs(cell) for cell in code_cells)
    assert re.search(r"realized noise rate: \d+\.\d%", text), text
    for key in ("kept", "kept correct", "kept wrong"):
        assert re.search(rf"^{key}:\s+\d+\.\d%", text, flags=re.M), f"no {key!r} fraction printed"
    accuracy = re.search(r"^final test accuracy: (\d\.\d+)$", text, flags=re.M)
    assert accuracy, "the notebook printed no final test accuracy"
    assert float(accuracy.group(1)) > MIN_FINAL_ACCURACY, accuracy.group(0)
    assert "the reloaded SavedModel agrees with the in-memory classifier" in text
    figures = [output for cell in code_cells for output in cell.outputs if "image/png" in output.get("data", {})]
    assert len(figures) >= FIGURES, f"expected {FIGURES} inline figures, got {len(figures)}"
    assert not os.listdir(working_dir), f"the notebook wrote into its working directory: {os.listdir(working_dir)}"
    print(f"notebook executed in {elapsed:.0f} s; {accuracy.group(0)}")
