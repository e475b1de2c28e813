"""Every dialog box the app shows goes through these functions, so tests can answer them.

``ask`` returns True for "Yes"; ``error``/``info`` show a message. Tests monkeypatch the module
attributes (e.g. ``messages.ask = lambda *a, **k: True``); the app calls them as
``messages.ask(...)`` so the patch is seen everywhere.
"""
from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

# the last messages shown, newest last (tests and the status bar read them)
history: list[tuple[str, str, str]] = []


def error(parent: QWidget | None, title: str, text: str, details: str = "") -> None:
    history.append(("error", title, text))
    box = QMessageBox(QMessageBox.Icon.Critical, title, text, QMessageBox.StandardButton.Ok, parent)
    if details:
        box.setDetailedText(details)
    box.exec()


def info(parent: QWidget | None, title: str, text: str) -> None:
    history.append(("info", title, text))
    QMessageBox.information(parent, title, text)


def ask(parent: QWidget | None, title: str, text: str) -> bool:
    history.append(("ask", title, text))
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes
