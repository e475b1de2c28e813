"""Uncaught exceptions, in the GUI thread or any other, end up in a dialog; the app stays alive.

``sys.excepthook`` (which PySide6 calls for an exception escaping a slot or a virtual method) and
``threading.excepthook`` both send the report through a queued signal, so the dialog always
opens in the GUI thread and never inside the code that failed."""
from __future__ import annotations

import sys
import threading
import traceback

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import QApplication

from . import messages


class ErrorReporter(QObject):
    report = Signal(str, str)

    def __init__(self):
        super().__init__()
        self.count = 0
        self.report.connect(self._show, Qt.ConnectionType.QueuedConnection)
        self._old_hook = sys.excepthook
        self._old_thread_hook = threading.excepthook

    def hook(self, etype, value, tb) -> None:
        text = "".join(traceback.format_exception(etype, value, tb))
        try:
            sys.__stderr__.write(text)
        except Exception:  # noqa: BLE001 - no stderr (pythonw)
            pass
        if etype is not None and issubclass(etype, KeyboardInterrupt):
            app = QApplication.instance()
            if app is not None:
                app.quit()
            return
        self.report.emit(f"{getattr(etype, '__name__', 'Error')}: {value}", text)

    def thread_hook(self, args) -> None:
        self.hook(args.exc_type, args.exc_value, args.exc_traceback)

    @Slot(str, str)
    def _show(self, message: str, details: str) -> None:
        self.count += 1
        messages.error(QApplication.activeWindow(), "Unexpected error",
                       f"{message}\n\nThe window stays open; the details below help to report the bug.",
                       details)

    def install(self) -> "ErrorReporter":
        sys.excepthook = self.hook
        threading.excepthook = self.thread_hook
        return self

    def uninstall(self) -> None:
        sys.excepthook = self._old_hook
        threading.excepthook = self._old_thread_hook
