"""The studio's tabs, one module each, each laid out the same way: layout (``build``) -> handlers (a class
of the tab's event handlers) -> wiring (``wire``), outputs declared once as named slots."""
