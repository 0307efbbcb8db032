"""The ANS CI-SIS validation (``../shared/interop/ci-sis/validate.py``) run on many documents
in one process.

``validate.py`` compiles both schematrons for every document (about 3 s each). This helper
uses its own functions and the same ISO skeleton steps, but compiles each schematron once and
then validates every document against the XSD and the compiled schematrons: the same checks,
so that a test can validate a dozen documents in a few seconds.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
CISIS = ROOT.parent / "shared" / "interop" / "ci-sis"
SKIP_REASON = f"the ANS CI-SIS validation artefacts are absent ({CISIS})"
_FAILED = re.compile(r"<svrl:failed-assert\b[^>]*location=\"([^\"]*)\"[^>]*>(.*?)"
                     r"</svrl:failed-assert>", re.S)


def available() -> bool:
    return (CISIS / "validate.py").is_file()


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cisis_validate", CISIS / "validate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Validator:
    """``with Validator() as v: v.errors(path)``: XSD + both schematrons, compiled once."""

    def __enter__(self) -> Validator:
        from saxonche import PySaxonProcessor

        self.validate = _module()
        self.proc = PySaxonProcessor(license=False)
        self.xslt = self.proc.new_xslt30_processor()
        self.compiled = []
        moteur = Path(self.validate.SCH) / "moteur"
        for n, sch in enumerate(self.validate.DEFAULT):
            src = Path(self.validate.SCH) / sch
            tmp = src.parent / f".batch-{os.getpid()}-{n}"
            a, b = f"{tmp}.1.sch", f"{tmp}.2.sch"
            compiled = src.parent / f".compiled-batch-{os.getpid()}-{n}.xsl"
            try:
                self.xslt.compile_stylesheet(
                    stylesheet_file=str(moteur / "iso_dsdl_include.xsl")).transform_to_file(
                    source_file=str(src), output_file=a)
                self.xslt.compile_stylesheet(
                    stylesheet_file=str(moteur / "iso_abstract_expand.xsl")).transform_to_file(
                    source_file=a, output_file=b)
                self.xslt.compile_stylesheet(
                    stylesheet_file=str(moteur / "iso_svrl_for_xslt2.xsl")).transform_to_file(
                    source_file=b, output_file=str(compiled))
                self.compiled.append(
                    (sch, self.xslt.compile_stylesheet(stylesheet_file=str(compiled))))
            finally:
                for leftover in (a, b, str(compiled)):
                    if os.path.exists(leftover):
                        os.remove(leftover)
        return self

    def __exit__(self, *exc: object) -> None:
        self.compiled.clear()

    def errors(self, document: Path) -> list[str]:
        errors = list(self.validate.xsd_errors(str(document)))
        for sch, executable in self.compiled:
            svrl = executable.transform_to_string(source_file=str(Path(document).resolve()))
            for m in _FAILED.finditer(svrl or ""):
                text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", m.group(2))).strip()
                errors.append(f"{sch}: {text} (at {m.group(1)})")
        return errors
