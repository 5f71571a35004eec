"""Widgets of the run screen: the growing tree, the stats bar, the detail and log panes."""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import ProgressBar, RichLog, Static, Tree
from textual.widgets.tree import TreeNode

from treesynth.core.progress import Progress

from .format import stats_progress_line, stats_usage_line
from .model import GLYPHS, PRUNED_S, Changes, RunModel, ViewNode, id_key

_EXPAND_ICON_WIDTH = 2  # Tree.ICON_NODE / ICON_NODE_EXPANDED are two cells wide
_GLYPH_STYLES = {state: Style.parse(style) for state, (_g, style, _d) in GLYPHS.items()}
_DIM = Style(dim=True)
_PRUNED = Style(dim=True, strike=True)
_BOLD = Style(bold=True)
_EMPTY = Text()


class RunTree(Tree[ViewNode]):
    """A Tree over a RunModel, updated in batches.

    Labels are drawn from each node's ViewNode at render time, so updating a node is a
    mutation plus a repaint of the visible lines: no per-node messages, no rebuilds. Nodes
    are added or removed in place (never by rebuilding the tree) and the cursor row stays
    where it is on screen when nodes appear above it.
    """

    DEFAULT_CSS = """
    RunTree { scrollbar-size-vertical: 1; overflow-x: hidden; }
    """

    def __init__(self, model: RunModel, auto_expand_depth: int = 2, **kw) -> None:
        super().__init__("", data=model.nodes["0"], **kw)
        self.model = model
        self.auto_expand_depth = auto_expand_depth
        self._pin: tuple[TreeNode[ViewNode], int, int] | None = None  # (cursor node, wanted row, scroll then)
        self.handles: dict[str, TreeNode[ViewNode]] = {"0": self.root}
        self.guide_depth = 3
        self.root.expand()
        self._strips: LRUCache[tuple, Strip] = LRUCache(2048)
        self._styles_key: tuple | None = None
        self._styles: dict[str, Style] = {}

    # ---- rendering -------------------------------------------------------
    # Textual's Tree renders each line through rich Text and keys its line cache on every
    # ancestor's update count, so one changed count near the root repaints every visible line
    # the slow way. RunTree builds each line's segments directly and keys its cache on the
    # line's own node only: a batch of updates repaints just the lines that changed.

    def _line_styles(self) -> dict[str, Style]:
        key = (self._pseudo_class_state, self.app.theme, self.has_focus)
        if key != self._styles_key:
            self._styles_key = key
            self._strips.clear()
            get = self.get_component_rich_style
            self._styles = {
                "guides": get("tree--guides", partial=True),
                "label": get("tree--label", partial=True),
                "cursor": get("tree--cursor", partial=False),
                "hover": get("tree--highlight-line"),
            }
        return self._styles

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        lines = self._tree_lines
        width = self.size.width
        if y >= len(lines):
            return Strip.blank(width, base_style)
        line = lines[y]
        node = line.path[-1]
        vn = node.data
        styles = self._line_styles()
        cursor = self.cursor_line == y
        hover = self.hover_line == y
        path = line.path
        guides = "".join("   " if n.is_last else "│  " for n in path[1:-1])
        if len(path) > 1:
            guides += "└─ " if line.last else "├─ "
        pad_to = max(self.virtual_size.width, width)
        key = (y, id(node), node._updates, node._expanded, node._allow_expand, guides, cursor, hover, pad_to)
        strip = self._strips.get(key)
        if strip is None:
            line_style = (styles["hover"] if hover else base_style) + Style(meta={"line": y})
            label_style = styles["label"]
            if cursor:
                label_style = label_style + styles["cursor"]
            segs: list[Segment] = []
            if guides:
                segs.append(Segment(guides, line_style + styles["guides"]))
            if node._allow_expand:
                icon = self.ICON_NODE_EXPANDED if node._expanded else self.ICON_NODE
                segs.append(Segment(icon, line_style + _BOLD + Style(meta={"toggle": True})))
            node_meta = Style(meta={"node": node._id, "line": y})
            ls = line_style + label_style + node_meta
            if vn is None:
                segs.append(Segment(str(node._label), ls))
            else:
                segs.append(Segment(GLYPHS[vn.state][0], ls + _GLYPH_STYLES[vn.state]))
                segs.append(Segment(" ", ls))
                segs.append(Segment(vn.counts, ls + _DIM))
                segs.append(Segment(" ", ls))
                segs.append(Segment(vn.text, ls + _PRUNED if vn.state == PRUNED_S else ls))
            strip = Strip(segs).extend_cell_length(pad_to, line_style)
            self._strips[key] = strip
        return strip.crop(x1, x2)

    def render_label(self, node: TreeNode[ViewNode], base_style: Style, style: Style) -> Text:
        vn = node.data
        if vn is None:
            return super().render_label(node, base_style, style)
        glyph, gstyle, _ = GLYPHS[vn.state]
        pruned = vn.state == PRUNED_S
        label = Text.assemble(
            (glyph, gstyle), " ", (vn.counts, "dim"), " ", (vn.text, "dim strike" if pruned else ""),
        )
        label.stylize(style)
        if node._allow_expand:
            icon = self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE
            return Text.assemble((icon, base_style + Style(bold=True)), label)
        return label

    def get_label_width(self, node: TreeNode[ViewNode]) -> int:
        vn = node.data
        if vn is None:
            return super().get_label_width(node)
        return vn.width + (_EXPAND_ICON_WIDTH if node._allow_expand else 0)

    # ---- structure ---------------------------------------------------------
    def process_label(self, label) -> Text:
        if isinstance(label, str) and not label:
            return _EMPTY  # labels are drawn from the ViewNode: skip markup parsing for each node
        return super().process_label(label)

    def _add(self, parent: TreeNode[ViewNode], vn: ViewNode, before: int | None = None) -> TreeNode[ViewNode]:
        """Add a node (and the model's subtree under it) without invalidating the tree each time:
        ``apply_changes`` and ``populate`` invalidate once per batch."""
        h = self._add_node(parent, _EMPTY, vn)
        h._expanded = vn.depth < self.auto_expand_depth
        h._allow_expand = bool(vn.children)
        if before is None:
            parent._children.append(h)
        else:
            parent._children.insert(before, h)
        parent._updates += 1
        self.handles[vn.id] = h
        for cid in vn.children:
            c = self.model.nodes.get(cid)
            if c is not None:
                self._add(h, c)
        return h

    def _forget(self, h: TreeNode[ViewNode]) -> None:
        stack = [h]
        while stack:
            n = stack.pop()
            if n.data is not None and self.handles.get(n.data.id) is n:
                del self.handles[n.data.id]
            stack.extend(n.children)

    def populate(self) -> None:
        """(Re)build every node from the model: used once, when a saved run is loaded."""
        self.root.remove_children()
        self.handles = {"0": self.root}
        root = self.model.nodes["0"]
        self.root.data = root
        for cid in root.children:
            c = self.model.nodes.get(cid)
            if c is not None:
                self._add(self.root, c)
        self.root.allow_expand = bool(root.children)
        self.root.expand()
        self._invalidate()

    def _reconcile(self, nid: str) -> None:
        h = self.handles.get(nid)
        vn = self.model.nodes.get(nid)
        if h is None or vn is None:
            return
        want = vn.children
        wanted = set(want)
        for c in list(h.children):
            cid = c.data.id if c.data is not None else None
            if cid not in wanted or c.data is not self.model.nodes.get(cid):
                self._forget(c)
                c.remove()
        have = {c.data.id: c for c in h.children if c.data is not None}
        for i, cid in enumerate(want):
            if cid in have:
                continue
            c = self.model.nodes.get(cid)
            if c is not None:
                self._add(h, c, before=i if i < len(h.children) else None)
        if h.allow_expand != bool(want):
            h.allow_expand = bool(want)
        if want and vn.depth < self.auto_expand_depth and not h.is_expanded:
            h.expand()

    def apply_changes(self, ch: Changes) -> None:
        """Apply one batch of model changes; keep the cursor node on the same screen row."""
        anchor = self.cursor_node
        anchor_row = None
        structural = ch.structural
        if structural and anchor is not None and anchor._line >= 0:
            anchor_row = anchor._line - int(self.scroll_offset.y)
            pin = self._pin
            if pin is not None and pin[0] is anchor and pin[2] == int(self.scroll_offset.y):
                # the row it was kept on before a scroll was clamped (no lines below it yet): back to it
                anchor_row = pin[1]
        for nid in sorted(ch.restructured, key=id_key):
            self._reconcile(nid)
        for parent, fresh in ch.added:
            ph = self.handles.get(parent)
            if ph is None:
                continue
            for cid in fresh:
                vn = self.model.nodes.get(cid)
                if vn is not None and cid not in self.handles and vn.parent == parent:
                    self._add(ph, vn)
            if not ph.allow_expand and ph.children:
                ph.allow_expand = True
                if ph.data is not None and ph.data.depth < self.auto_expand_depth:
                    ph.expand()
        visible: list[int] = []
        top, height = int(self.scroll_offset.y), self.size.height
        for nid in ch.dirty:
            h = self.handles.get(nid)
            if h is not None:
                h._updates += 1  # invalidates the node's cached line
                if not structural and top <= h._line < top + height:
                    visible.append(h._line)
        if structural:
            self._invalidate()  # once for the whole batch
            if anchor is not None and (anchor.data is None or self.handles.get(anchor.data.id) is not anchor):
                # the cursor's node was removed (reset or edited): move to its nearest surviving ancestor
                nid = anchor.data.id if anchor.data is not None else "0"
                while nid not in self.handles and "." in nid:
                    nid = nid.rsplit(".", 1)[0]
                anchor = self.handles.get(nid, self.root)
                _ = self.last_line  # rebuild the lines now
                self.move_cursor(anchor)
            else:
                # rebuild the lines now: the anchor's new line is known, and a key handled before the
                # next repaint moves the cursor from where it really is (not from a stale line)
                _ = self.last_line
                if anchor is not None and anchor_row is not None and 0 <= anchor_row < self.size.height:
                    self._keep_row(anchor, anchor_row)
                    # and once more after the repaint, over any scroll Textual had deferred until then
                    self.call_after_refresh(self._keep_row, anchor, anchor_row)
            self.refresh()
        else:
            # repaint only the visible lines that changed (nothing at all if none is on screen)
            width = self.size.width
            for line in visible:
                self.refresh(Region(0, line - top, width, 1))

    def _keep_row(self, anchor: TreeNode[ViewNode], row: int) -> None:
        if self.cursor_node is anchor and anchor._line >= 0 and anchor._line - row != int(self.scroll_offset.y):
            self.scroll_to(y=max(0, anchor._line - row), animate=False, immediate=True, force=True)
        # remember the row wanted: with too few lines below the anchor the scroll is clamped, and the
        # next batch (more lines) puts it back; a scroll or cursor move by the user drops the pin
        self._pin = (anchor, row, int(self.scroll_offset.y)) if self.cursor_node is anchor else None

    def select_id(self, node_id: str) -> bool:
        h = self.handles.get(node_id)
        if h is None:
            return False
        p = h.parent
        while p is not None:
            if not p.is_expanded:
                p.expand()
            p = p.parent
        _ = self.last_line
        self.move_cursor(h)
        return True


class StatsBar(Vertical):
    """Always visible: spend, tokens, requests, retries, errors, rate, elapsed, ETA, progress bar."""

    DEFAULT_CSS = """
    StatsBar { height: 2; padding: 0 1; background: $boost; }
    StatsBar #usage { height: 1; width: 1fr; }
    StatsBar Horizontal { height: 1; }
    StatsBar ProgressBar { width: auto; margin-right: 1; }
    StatsBar ProgressBar Bar { width: 20; }
    StatsBar Bar > .bar--bar { background: $foreground 25%; }
    StatsBar Bar > .bar--complete { background: $foreground 25%; }
    StatsBar #progress { height: 1; width: 1fr; }
    """

    def compose(self):
        yield Static(id="usage")
        with Horizontal():
            yield ProgressBar(total=1, show_eta=False, show_percentage=True, id="bar")
            yield Static(id="progress")

    def on_mount(self) -> None:
        self._shown: dict[str, object] = {}

    def _set(self, wid: str, text: Text) -> None:
        if self._shown.get(wid) != text.plain:  # repaint only what changed, without a relayout
            self._shown[wid] = text.plain
            self.query_one(f"#{wid}", Static).update(text, layout=False)

    def show(self, p: Progress, elapsed: float | None, state: str, requests_at_start: int = 0) -> None:
        self._set("usage", stats_usage_line(p, elapsed, requests_at_start))
        total, done = max(1, p.size), min(p.samples_done, max(1, p.size))
        if self._shown.get("bar") != (total, done):
            self._shown["bar"] = (total, done)
            self.query_one("#bar", ProgressBar).update(total=total, progress=done)
        self._set("progress", stats_progress_line(p, elapsed, state))


class DetailPane(VerticalScroll, can_focus=True):
    DEFAULT_CSS = """
    DetailPane { padding: 0 1; border-left: vkey $panel; scrollbar-size-vertical: 1; }
    DetailPane:focus { border-left: vkey $accent; }
    DetailPane Static { width: 1fr; }
    """
    BINDINGS = [("up", "scroll_up", "Scroll up"), ("down", "scroll_down", "Scroll down")]

    def compose(self):
        yield Static(Text("Select a node in the tree.", style="dim"), id="detail-body")

    def show(self, renderable) -> None:
        self.renderable = renderable
        self.query_one("#detail-body", Static).update(renderable)

    def plain(self, width: int = 120) -> str:
        """What the pane shows, as plain text (for tests and debugging)."""
        import io

        from rich.console import Console

        c = Console(file=io.StringIO(), width=width, record=True, color_system=None)
        c.print(getattr(self, "renderable", ""))
        return c.export_text()


class LogPane(RichLog):
    """Warnings, retries, validation failures and steering: bounded and scrollable."""

    DEFAULT_CSS = """
    LogPane { height: 20%; min-height: 4; max-height: 14; border-top: hkey $panel; scrollbar-size-vertical: 1;
              background: $surface; }
    LogPane:focus { border-top: hkey $accent; }
    """
    STYLES = {"warn": "yellow", "error": "bold red", "retry": "magenta", "steer": "cyan", "leaf": "blue", "info": "green"}
    MAX_PER_BATCH = 40

    def __init__(self, **kw) -> None:
        super().__init__(max_lines=1000, wrap=False, markup=False, highlight=False, auto_scroll=True, **kw)
        self.count = 0

    def add(self, lines: list[tuple[str, str]]) -> None:
        if not lines:
            return
        shown = lines[-self.MAX_PER_BATCH:]
        if len(lines) > len(shown):
            self.write(Text(f"… {len(lines) - len(shown)} more lines (all of them are in events.jsonl)", style="dim"))
        for level, msg in shown:
            t = Text()
            t.append(f"{level:>5} ", style=self.STYLES.get(level, ""))
            t.append(" ".join(msg.split()))
            self.write(t)
        self.count += len(lines)


__all__ = ["RunTree", "StatsBar", "DetailPane", "LogPane", "Horizontal"]
