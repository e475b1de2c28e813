"""``sgma-gui``: the SGMA Part Explorer desktop app.

With no arguments it opens the built-in synthetic dataset and the bundled demo model (when the
package ships ``resources/demo.pt``). ``--dataset KIND --root PATH --checkpoint FILE`` opens those
instead; without ``--checkpoint`` the model bundled for that kind opens (``resources/cub.pt`` for
``--dataset cub``; engine/bundled.py lists them). ``--screenshot FILE`` saves a picture of the window once it is ready and quits.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sgma-gui", description="SGMA Part Explorer: audit, train and evaluate "
                                "Semantic-Guided Multi-Attention zero-shot models.")
    p.add_argument("--dataset", metavar="KIND", help="synthetic, cub, awa2, flo or folder")
    p.add_argument("--root", metavar="PATH", help="the dataset's root folder")
    p.add_argument("--option", metavar="KEY=VALUE", action="append", default=[],
                   help="a dataset option (repeatable), e.g. --option split=ss")
    p.add_argument("--checkpoint", metavar="FILE", help="a model checkpoint (.pt) or a run folder")
    p.add_argument("--no-demo", action="store_true", help="do not load the bundled model of the dataset kind")
    p.add_argument("--tab", choices=["audit", "training", "evaluation", "classes"], help="the panel to show")
    p.add_argument("--settings", metavar="FILE", help="an INI file for the settings instead of the user's")
    p.add_argument("--screenshot", metavar="FILE", help="save a screenshot of the window, then quit")
    p.add_argument("--quit-after", metavar="SECONDS", type=float, default=None,
                   help="quit after this many seconds (with --screenshot: take it then; default 3)")
    args = p.parse_args(argv)
    if args.root and not args.dataset:
        p.error("--root needs --dataset KIND")
    return args


def data_config(args: argparse.Namespace) -> Optional[DataConfig]:
    if not args.dataset:
        return None
    from sgma.engine.config import DataConfig
    from .dialog_open_dataset import kind_options, parse_option
    known = kind_options(args.dataset)
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"sgma-gui: --option needs KEY=VALUE, got {item!r}")
        try:
            options[key.strip()] = parse_option(value, known.get(key.strip()), key.strip())
        except ValueError as e:
            raise SystemExit(f"sgma-gui: --option {e}") from None
    return DataConfig.from_options(args.dataset, args.root, options)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    dc = data_config(args)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("SGMA Part Explorer")
    app.setOrganizationName("SGMA")
    from .errors import ErrorReporter
    from .mainwindow import TABS, MainWindow
    from .settings import Settings

    reporter = ErrorReporter().install()
    win = MainWindow(Settings(args.settings), data_config=dc, checkpoint=args.checkpoint,
                     load_demo=not args.no_demo)
    if args.tab:
        win.tabs.setCurrentIndex(TABS.index(args.tab))
    win.show()
    if args.screenshot:
        delay = args.quit_after if args.quit_after is not None else 3.0

        def shoot():
            path = os.path.abspath(args.screenshot)
            if app.platformName() == "xcb":     # what the X server really shows
                g = win.frameGeometry()
                pixmap = win.screen().grabWindow(0, g.x(), g.y(), g.width(), g.height())
            else:
                pixmap = win.grab()
            ok = pixmap.save(path)
            st = win.state
            print(f"screenshot {'saved to' if ok else 'FAILED:'} {path}", flush=True)
            print(f"state: dataset={st.dataset.name if st.dataset else None} "
                  f"images={len(st.dataset) if st.dataset else 0} model={st.checkpoint_path}", flush=True)
            win.close()
            app.quit()
        QTimer.singleShot(int(delay * 1000), shoot)
    elif args.quit_after is not None:
        QTimer.singleShot(int(args.quit_after * 1000), win.close)
    code = app.exec()
    reporter.uninstall()
    return code


if __name__ == "__main__":
    sys.exit(main())
