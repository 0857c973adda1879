"""What onbeat logged, for tests: the messages of the `onbeat` logger, from any thread."""
import logging


class LogLines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []
        self._logger = logging.getLogger("onbeat")

    def emit(self, record):
        self.lines.append(record.getMessage())

    def __enter__(self):
        self._level = self._logger.level
        self._logger.addHandler(self)
        self._logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)
