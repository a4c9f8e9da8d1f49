"""The bash completions (packaging/completion/) against the real binaries:
for every command path of `rootseal --help` (recursively) and of
`rootseald --help`, completing an empty word offers exactly its subcommands
and completing "-" exactly its options, as the completion function computes
them in bash. A subcommand or option added, renamed or removed in the CLI
fails here until the completion follows."""
import os
import re
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
COMPLETIONS = os.path.normpath(os.path.join(HERE, "..", "..", "packaging", "completion"))
ROOTSEAL = os.environ.get("ROOTSEAL_CLI", "")
ROOTSEALD = os.environ.get("ROOTSEALD", "")


def parse_help(text):
    """(subcommands, options) of a CLI11 --help text."""
    subs, opts, section = [], [], None
    for line in text.splitlines():
        m = re.match(r"^([A-Z][A-Za-z ]*):\s*$", line)
        if m:
            section = m.group(1)
            continue
        if section == "Subcommands":
            m = re.match(r"^  (\S+)", line)
            if m:
                subs.append(m.group(1))
        elif section == "Options":
            m = re.match(r"^  (-[^\s]+)", line)
            if m:
                opts += m.group(1).split(",")
    return subs, opts


def help_tree(binary, path=()):
    p = subprocess.run([binary] + list(path) + ["--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, (path, p.stderr)
    subs, opts = parse_help(p.stdout)
    assert "--help" in opts, (path, p.stdout)
    yield list(path), subs, opts, p.stdout
    for s in subs:
        yield from help_tree(binary, list(path) + [s])


def complete(command, words, file=None):
    """COMPREPLY of command's completion function (from file, default the
    shipped one) for the command line words (the last one is the word being
    completed)."""
    script = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _%s; printf "%%s\\n" "${COMPREPLY[@]}"' % command
    p = subprocess.run(["bash", "-c", script, "x", file or os.path.join(COMPLETIONS, command), command] + words,
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    return sorted(w for w in p.stdout.splitlines() if w)


class Completion(unittest.TestCase):
    def test_rootseal_every_subcommand_and_option(self):
        self.assertTrue(os.access(ROOTSEAL, os.X_OK), "ROOTSEAL_CLI is not set to the rootseal binary")
        paths = 0
        for path, subs, opts, _ in help_tree(ROOTSEAL):
            paths += 1
            self.assertEqual(complete("rootseal", path + ["-"]), sorted(opts), "options of %r" % " ".join(path))
            if subs:
                self.assertEqual(complete("rootseal", path + [""]), sorted(subs), "subcommands of %r" % " ".join(path))
        self.assertGreaterEqual(paths, 20)
        # An option's value is not taken for a subcommand; values that are offered are the CLI's.
        self.assertEqual(complete("rootseal", ["--config", "token", "token", ""]), ["create", "list", "lookup", "revoke"])
        help_text = subprocess.run([ROOTSEAL, "tpm", "reseal", "--help"], capture_output=True, text=True).stdout
        self.assertIn("TEXT:{root,pin}", help_text)
        self.assertEqual(complete("rootseal", ["tpm", "reseal", "--target", ""]), ["pin", "root"])
        help_text = subprocess.run([ROOTSEAL, "ceremony", "rotate-root", "--help"], capture_output=True, text=True).stdout
        mechanisms = re.search(r"--mechanism TEXT:\{([a-z0-9,-]+)\}", help_text)
        self.assertIsNotNone(mechanisms, help_text)
        self.assertEqual(complete("rootseal", ["ceremony", "rotate-root", "--mechanism", ""]),
                         sorted(mechanisms.group(1).split(",")))
        self.assertEqual(complete("rootseal", ["ceremony", "init", "--mechanism", "aes-c"]), ["aes-cbc-pad-hmac"])

    def test_rootseald_every_option(self):
        self.assertTrue(os.access(ROOTSEALD, os.X_OK), "ROOTSEALD is not set to the rootseald binary")
        (path, subs, opts, text), = list(help_tree(ROOTSEALD))
        self.assertEqual(subs, [])
        self.assertEqual(complete("rootseald", ["-"]), sorted(opts))
        levels = re.search(r"--log-level[^\n]*\(([a-z, ]+)\)", text)
        self.assertIsNotNone(levels, text)
        self.assertEqual(complete("rootseald", ["--log-level", ""]), sorted(levels.group(1).split(", ")))

    def test_a_completion_that_lost_a_subcommand_differs(self):
        # The comparison can fail: the shipped file with `tpm` dropped from the top level.
        with open(os.path.join(COMPLETIONS, "rootseal")) as f:
            text = f.read()
        broken = re.sub(r'(\n\s*""\) subs="[^"\n]*) tpm\b', r"\1", text, count=1)
        self.assertNotEqual(broken, text)
        with tempfile.NamedTemporaryFile("w", suffix=".bash") as f:
            f.write(broken)
            f.flush()
            top = [subs for path, subs, _, _ in help_tree(ROOTSEAL) if path == []][0]
            self.assertNotEqual(complete("rootseal", [""], f.name), sorted(top))
            self.assertEqual(complete("rootseal", [""]), sorted(top))


if __name__ == "__main__":
    unittest.main()
