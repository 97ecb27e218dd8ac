"""Private helpers shared by every layer: strict config models and their error text
(``config``), atomic writes, links and hashing (``files``), CLI tables (``tables``), the
progress line of long phases (``progress``), fault injection for the reliability suite
(``faults``) and the package version (``version``).

May import: the standard library and third-party packages only. Exports nothing here: import
the module you need.
"""
