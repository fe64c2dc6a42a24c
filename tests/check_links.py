#!/usr/bin/env python3
"""check_links.py: every relative link in the user documentation resolves.

The files checked are README.md, docs/*.md, clients/python/README.md and
any README under deploy/.  For each Markdown link or image ([text](target),
[id]: target, <a href="...">) outside code:

  - an external target (http:, https:, mailto:) is left alone;
  - a relative target must name a file or folder inside the repository
    (no "../shared", nothing above the root);
  - a #fragment must match a heading of the target Markdown file (GitHub's
    anchor rule) or an explicit <a id/name> there.

Any mention of "../shared" or "shared/spec", even in code, also fails:
users who clone the repository do not have that folder.

The flag table of docs/operations.md must name exactly the flags that
`archevald --help` lists (names only), when the daemon is built
($AE_BUILDDIR/server/archevald).

A self-test of the parser and the anchor rule runs first, so a broken
checker cannot pass silently.  Exit status: 0 all good, 1 a problem
(each printed as FILE:LINE: message).  Standard library only.
"""
import glob
import os
import re
import sys

EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)"
                         r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_HREF = re.compile(r"<a\s[^>]*href=\"([^\"]*)\"", re.IGNORECASE)
HTML_ANCHOR = re.compile(r"<a\s[^>]*(?:id|name)=\"([^\"]*)\"", re.IGNORECASE)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^ {0,3}(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
FORBIDDEN = ("../shared", "shared/spec")


def strip_code_spans(line):
    """The line with inline code replaced by spaces (same length)."""
    return CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)


def prose_lines(text):
    """(line number, line) for every line outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.split("\n"), 1):
        m = FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield number, line


def heading_text(raw):
    """A heading as GitHub renders it to text: code spans keep their
    content, links keep their text, emphasis marks go."""
    text = re.sub(r"`+([^`]*)`+", r"\1", raw)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    return text


def slug(raw):
    """GitHub's anchor for a heading: lower case, punctuation dropped
    (letters, digits, '_', '-' and spaces kept), spaces to '-'."""
    text = heading_text(raw).strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in "_- ")
    return text.replace(" ", "-")


def anchors_of(text):
    """Every anchor a Markdown text defines: heading slugs (a repeated
    slug gets -1, -2, ...) and explicit <a id/name>."""
    seen = {}
    anchors = set()
    for _, line in prose_lines(text):
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            anchors.add(base if count == 0 else "%s-%d" % (base, count))
        for a in HTML_ANCHOR.findall(line):
            anchors.add(a)
    return anchors


def links_of(text):
    """(line number, target) for every link outside code."""
    for number, line in prose_lines(text):
        bare = strip_code_spans(line)
        for m in INLINE_LINK.finditer(bare):
            yield number, m.group(1).strip("<>")
        m = REFERENCE_DEF.match(bare)
        if m:
            yield number, m.group(1).strip("<>")
        for href in HTML_HREF.findall(bare):
            yield number, href


def check_text(path, text, root, read):
    """Problems of one file's text, as (line, message).  read(path) gives
    another file's text, or None."""
    problems = []
    for number, line in enumerate(text.split("\n"), 1):
        for bad in FORBIDDEN:
            if bad in line:
                problems.append((number, "mentions %r, which is outside the "
                                 "repository" % bad))
    own_anchors = None
    for number, target in links_of(text):
        if EXTERNAL.match(target) or target.startswith("//"):
            continue
        file_part, _, fragment = target.partition("#")
        if file_part:
            resolved = os.path.normpath(
                os.path.join(os.path.dirname(path), file_part))
            inside = os.path.relpath(resolved, root)
            if inside == ".." or inside.startswith(".." + os.sep) or \
                    os.path.isabs(file_part):
                problems.append((number, "link %s leaves the repository"
                                 % target))
                continue
            if not os.path.exists(resolved):
                problems.append((number, "link %s: no such file" % target))
                continue
        else:
            resolved = path
        if not fragment:
            continue
        if not resolved.endswith(".md"):
            continue
        if resolved == path:
            if own_anchors is None:
                own_anchors = anchors_of(text)
            anchors = own_anchors
        else:
            other = read(resolved)
            anchors = anchors_of(other) if other is not None else set()
        if fragment not in anchors:
            problems.append((number, "link %s: no heading #%s in %s"
                             % (target, fragment,
                                os.path.relpath(resolved, root))))
    return problems


def self_test():
    """The parser and the anchor rule on known cases."""
    assert slug("The request (`POST /v1/jobs`)") == "the-request-post-v1jobs"
    assert slug("Long polls (`wait_ms`)") == "long-polls-wait_ms"
    assert slug("### `provenance.timings_s`".lstrip("# ")) == \
        "provenancetimings_s"
    assert slug("Flags & options: [link](x.md)") == "flags--options-link"
    assert anchors_of("# A\n## A\n```\n# B\n```\n") == {"a", "a-1"}
    root = os.sep + "repo"
    doc = os.path.join(root, "docs", "x.md")
    files = {os.path.join(root, "docs", "y.md"): "# Yes\n"}
    text = ("# Top\n[ok](#top) [bad](#nope) [y](y.md#yes) [y2](y.md#no)\n"
            "[out](../../etc/passwd) `[code](missing.md)`\n"
            "```\n[fenced](missing.md)\n```\n"
            "[ext](https://example.org/#x) see `../shared/spec/api.md`\n"
            "[ref]: missing.md\n")
    real_exists = os.path.exists
    try:
        os.path.exists = lambda p: p in files or p == doc
        problems = check_text(doc, text, root, files.get)
    finally:
        os.path.exists = real_exists
    messages = sorted(m for _, m in problems)
    expected = sorted([
        "link #nope: no heading #nope in docs/x.md",
        "link y.md#no: no heading #no in docs/y.md",
        "link ../../etc/passwd leaves the repository",
        "mentions '../shared', which is outside the repository",
        "mentions 'shared/spec', which is outside the repository",
        "link missing.md: no such file",
    ])
    assert messages == expected, messages


def files_to_check(root):
    names = [os.path.join(root, "README.md"),
             os.path.join(root, "clients", "python", "README.md")]
    names += sorted(glob.glob(os.path.join(root, "docs", "*.md")))
    names += sorted(glob.glob(os.path.join(root, "deploy", "**", "README*"),
                              recursive=True))
    return [n for n in names if os.path.isfile(n)]


def read_file(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


HELP_FLAG = re.compile(r"^\s+--([a-z][a-z-]*)")
TABLE_FLAG = re.compile(r"^\| `--([a-z][a-z-]*)")


def check_flags(root):
    """Problems of the flag table against archevald --help, as strings;
    None when the daemon is not built."""
    build = os.environ.get("AE_BUILDDIR")
    daemon = os.path.join(build, "server", "archevald") if build else None
    if not daemon or not os.access(daemon, os.X_OK):
        return None
    import subprocess
    out = subprocess.run([daemon, "--help"], stdout=subprocess.PIPE,
                         check=True, timeout=60).stdout.decode()
    helped = {m.group(1) for m in map(HELP_FLAG.match, out.split("\n")) if m}
    text = read_file(os.path.join(root, "docs", "operations.md")) or ""
    table = {m.group(1) for m in map(TABLE_FLAG.match, text.split("\n"))
             if m}
    problems = ["docs/operations.md: --%s is in --help but not in the flag "
                "table" % f for f in sorted(helped - table)]
    problems += ["docs/operations.md: --%s is in the flag table but not in "
                 "--help" % f for f in sorted(table - helped)]
    if not helped:
        problems.append("archevald --help lists no flags")
    return problems


def main():
    self_test()
    root = os.environ.get("AE_SRCDIR") or \
        os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root = os.path.abspath(root)
    files = files_to_check(root)
    if not any(f.endswith(os.path.join("docs", "api.md")) for f in files):
        print("check_links: docs/api.md is missing under %s" % root)
        return 1
    failures = 0
    links = 0
    for path in files:
        text = read_file(path)
        links += sum(1 for _ in links_of(text))
        for number, message in check_text(path, text, root, read_file):
            print("%s:%d: %s" % (os.path.relpath(path, root), number, message))
            failures += 1
    flag_problems = check_flags(root)
    for message in flag_problems or []:
        print(message)
        failures += 1
    print("check_links: %d files, %d links, flags %s, %d problems"
          % (len(files), links,
             "not checked (no daemon built)" if flag_problems is None
             else "checked against archevald --help", failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
