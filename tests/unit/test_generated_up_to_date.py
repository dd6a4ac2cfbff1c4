"""`make check-generated`: the generated package matches what tools/codegen makes from spec/ now."""

from tools.codegen import stale_files


def test_generated_code_is_up_to_date() -> None:
    assert stale_files() == [], "generated code is stale: run `make generate`"
