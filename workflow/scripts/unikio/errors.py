"""The one error type the pipeline raises for problems a user can fix."""


class PipelineError(RuntimeError):
    """A problem stated in one sentence that says what is wrong and how to fix it."""
