"""Jupyter's kernel conformance suite (jupyter_kernel_test, Debian python3-jupyter-kernel-test) run against tsnb.

Run by test/conformance.test.ts as `/usr/bin/python3 -m unittest -v test_tsnb` from this directory, with a
private JUPYTER_PATH holding the tsnb kernelspec. The kernelspec name comes from TSNB_KERNEL_NAME (default
"tsnb"). Each attribute below feeds one test of jupyter_kernel_test.KernelTests; an empty attribute would
make that test skip, so every attribute the installed version reads is given a TypeScript snippet written
against the cell API (console.*, display.*, clearOutput, throw).
"""

import os
import unittest

import jupyter_kernel_test


class TsnbKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = os.environ.get("TSNB_KERNEL_NAME", "tsnb")

    # test_kernel_info
    language_name = "typescript"
    file_extension = ".ts"

    # test_execute_stdout / test_execute_stderr
    code_hello_world = 'console.log("hello, world")'
    code_stderr = 'console.error("oops")'

    # test_completion: globals of the user program, completed at the end of the text.
    completion_samples = [
        {"text": "Math.SQRT", "matches": {"SQRT1_2", "SQRT2"}},
        {"text": "JSON.str", "matches": {"stringify"}},
        {"text": "process.versions.nod", "matches": {"node"}},
    ]

    # test_is_complete: the kernel-side scanner over brackets, strings, template literals and comments.
    complete_code_samples = [
        "1 + 1",
        "const x: number = 1;",
        "function f(a: string) { return a.length; }",
        "`template ${1 + 1} literal`",
        '"a string with a { brace"',
        "// a comment with a (",
        "const o = { a: [1, 2, { b: 3 }] };",
    ]
    incomplete_code_samples = [
        "function f() {",
        "const a = [1, 2,",
        "console.log(",
        "const s = `unterminated ${",
        "if (x) {\n  foo(",
    ]
    invalid_code_samples = [
        "}",
        "const a = 1)",
        "foo(]",
    ]

    # test_error: exactly one output message, the error.
    code_generate_error = 'throw new Error("boom")'

    # test_execute_result (and test_history, which re-runs these): values formatted like util.inspect.
    code_execute_result = [
        {"code": "1 + 2", "result": "3"},
        {"code": "const s: string = 'a' + 'b'; s", "result": "'ab'"},
        {"code": "[1, 2, 3].map((n: number) => n * 2)", "result": "[ 2, 4, 6 ]"},
        {
            "code": 'const rich = { [Symbol.for("Jupyter.display")]() { return { "text/html": "<b>rich</b>" }; } }; rich',
            "mime": "text/html",
            "result": "<b>rich</b>",
        },
    ]

    # test_display_data: one sample per display.* helper.
    code_display_data = [
        {"code": 'display.html("<b>bold</b>");', "mime": "text/html"},
        {"code": 'display.markdown("# Title");', "mime": "text/markdown"},
        {"code": 'display.svg(\'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>\');', "mime": "image/svg+xml"},
        {"code": "display.json({ a: 1, b: [true, null] });", "mime": "application/json"},
        {"code": 'display.latex("$x^2$");', "mime": "text/latex"},
        {"code": "display.png(new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]));", "mime": "image/png"},
        {"code": 'display({ [Symbol.for("Jupyter.display")]() { return { "text/markdown": "*md*" }; } });', "mime": "text/markdown"},
    ]

    # test_history: tail, range and search are all supported; the pattern must match exactly one distinct
    # input among code_execute_result (for the unique subtest) and at least three runs of it (for n=3).
    supported_history_operations = ("tail", "range", "search")
    code_history_pattern = "1 + ?"

    # test_inspect
    code_inspect_sample = "Math.max"

    # test_clear_output
    code_clear_output = 'console.log("soon gone"); clearOutput()'

    # test_pager: `name?` shows inspect text in the pager (an execute_reply "page" payload), as in IPython.
    code_page_something = "Math.max?"


if __name__ == "__main__":
    unittest.main()
