"""An editor for one attribute vector: every named attribute of the dataset in a tree grouped by
the part before "::" (the dataset's ``attribute_groups``), each with an editable value (a text
field appears on double click or typing; checked on commit), and a search field."""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QLineEdit, QPushButton,
                               QStyledItemDelegate, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

NAME_ROLE = Qt.ItemDataRole.UserRole + 1


class _ValueDelegate(QStyledItemDelegate):
    """A text field per value, checked on commit: a non-number is refused (the old value stays)
    and said so; a number outside the dataset's range for that attribute is kept with a warning
    (a user class may mean "more than any bird here"). Messages go to ``AttributeEditor.message``
    and to the editor's ``note``, right under the values."""

    def __init__(self, editor: "AttributeEditor"):
        super().__init__(editor.tree)
        self.owner = editor

    def createEditor(self, parent, option, index):
        if index.column() != 1 or index.data(NAME_ROLE) is None:
            return None
        return QLineEdit(parent)

    def setEditorData(self, editor, index):
        editor.setText(f"{float(index.data(Qt.ItemDataRole.EditRole) or 0.0):g}")

    def setModelData(self, editor, model, index):
        self.owner.commit_text(index.data(NAME_ROLE), editor.text(),
                               lambda v: model.setData(index, v, Qt.ItemDataRole.EditRole))


def attribute_groups(names: list[str], groups: Optional[dict[str, list[int]]] = None) -> dict[str, list[int]]:
    """Group -> column indices: the dataset's groups when given, else the part before "::", else
    one group "attributes"."""
    if groups:
        out = {g: list(cols) for g, cols in groups.items()}
        covered = {j for cols in out.values() for j in cols}
        rest = [j for j in range(len(names)) if j not in covered]
        if rest:
            out.setdefault("other", []).extend(rest)
        return out
    out: dict[str, list[int]] = {}
    for j, n in enumerate(names):
        out.setdefault(n.split("::", 1)[0] if "::" in n else "attributes", []).append(j)
    return out


class AttributeEditor(QWidget):
    valuesChanged = Signal()
    message = Signal(str)          # a refused or out-of-range value, "" when the last one was fine

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.names: list[str] = []
        self.items: dict[str, QTreeWidgetItem] = {}
        self.group_items: dict[str, QTreeWidgetItem] = {}
        self.search = QLineEdit()
        self.search.setPlaceholderText("search attributes…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._filter)
        self.zero_button = QPushButton("All zero")
        self.zero_button.clicked.connect(lambda: self.set_values({}))
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Attribute", "Value"])
        self.ranges: dict[str, tuple[float, float]] = {}
        self.tree.setItemDelegate(_ValueDelegate(self))
        self.tree.setAlternatingRowColors(True)
        self.tree.itemChanged.connect(self._on_changed)
        row = QHBoxLayout()
        row.addWidget(self.search, 1)
        row.addWidget(self.zero_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.tree, 1)
        self.note = QLabel()            # the last refusal or warning, right under the values
        self.note.setWordWrap(True)
        self.note.hide()
        lay.addWidget(self.note)
        self.message.connect(self._show_note)
        self._quiet = False

    def _show_note(self, text: str) -> None:
        self.note.setText(text)
        self.note.setStyleSheet("color: #c62828" if "not a number" in text else "color: #b26a00")
        self.note.setVisible(bool(text))

    def set_attributes(self, names: list[str], groups: Optional[dict[str, list[int]]] = None) -> None:
        self._quiet = True
        self.tree.clear()
        self.names, self.items, self.group_items = list(names), {}, {}
        for group, cols in attribute_groups(self.names, groups).items():
            g = QTreeWidgetItem(self.tree, [group, ""])
            g.setFlags(g.flags() & ~Qt.ItemFlag.ItemIsEditable)
            self.group_items[group] = g
            for j in cols:
                n = self.names[j]
                short = n.split("::", 1)[1] if "::" in n and n.split("::", 1)[0] == group else n
                it = QTreeWidgetItem(g, [short, ""])
                it.setData(1, Qt.ItemDataRole.EditRole, 0.0)
                it.setData(1, NAME_ROLE, n)
                it.setToolTip(0, n)
                it.setFlags(it.flags() | Qt.ItemFlag.ItemIsEditable)
                self.items[n] = it
        self.tree.expandAll()
        self.tree.resizeColumnToContents(0)
        self._quiet = False
        self._update_groups()

    def set_ranges(self, ranges: dict[str, tuple[float, float]]) -> None:
        """Attribute -> (min, max) over the dataset's classes, for the out-of-range warning."""
        self.ranges = dict(ranges)

    def commit_text(self, name: str, text: str, store) -> bool:
        """Check ``text`` typed for attribute ``name``; ``store(value)`` when it is a number."""
        import math
        try:
            v = float(text.strip().replace(",", "."))
            if not math.isfinite(v):
                raise ValueError
        except ValueError:
            old = float(self.items[name].data(1, Qt.ItemDataRole.EditRole) or 0.0)
            self.message.emit(f"{name}: {text.strip()!r} is not a number; the value stays {old:g}")
            return False
        store(v)
        lo, hi = self.ranges.get(name, (-math.inf, math.inf))
        if v < lo or v > hi:
            self.message.emit(f"{name} = {v:g} is outside this dataset's range [{lo:g}, {hi:g}] "
                              "(kept: scores of such a class are extrapolations)")
        else:
            self.message.emit("")
        return True

    def values(self) -> dict[str, float]:
        return {n: float(it.data(1, Qt.ItemDataRole.EditRole) or 0.0) for n, it in self.items.items()}

    def set_values(self, values: dict[str, float]) -> None:
        self._quiet = True
        for n, it in self.items.items():
            it.setData(1, Qt.ItemDataRole.EditRole, float(values.get(n, 0.0)))
        self._quiet = False
        self._update_groups()
        self.valuesChanged.emit()

    def set_value(self, name: str, value: float) -> None:
        self.items[name].setData(1, Qt.ItemDataRole.EditRole, float(value))

    def _on_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if self._quiet or column != 1 or item.data(1, NAME_ROLE) is None:
            return
        self._update_groups()
        self.valuesChanged.emit()

    def _update_groups(self) -> None:
        self._quiet = True
        for g in self.group_items.values():
            nz = sum(1 for k in range(g.childCount()) if (g.child(k).data(1, Qt.ItemDataRole.EditRole) or 0) != 0)
            g.setText(1, f"{nz} set" if nz else "")
        self._quiet = False

    def _filter(self, text: str) -> None:
        t = text.strip().lower()
        for group, g in self.group_items.items():
            any_shown = False
            for k in range(g.childCount()):
                c = g.child(k)
                show = not t or t in c.data(1, NAME_ROLE).lower()
                c.setHidden(not show)
                any_shown |= show
            g.setHidden(not any_shown)
