// Command doclinks keeps the repository's documentation self-contained. It
// reads every git-tracked file and fails (exit status 1, one file:line per
// problem) when
//
//   - a Markdown file links, relatively, to a file or directory that does not
//     exist, or out of the repository: inline links [text](path) and
//     reference definitions [id]: path. Links with a scheme (https:, mailto:, ...)
//     and pure #anchors are not checked; a #fragment or ?query is stripped
//     before the path is looked up. Links inside fenced code blocks and
//     inline code are not links.
//   - a tracked file points outside the repository at material a clone does
//     not have: the briefing folder one level up, its design and style
//     notes, or the seed documents. In Go files only comments are read;
//     other text files are read whole; binary files are skipped.
//
// Usage, from anywhere in the work tree (meant to run in make lint):
//
//	go run ./internal/tools/doclinks [-C DIR]
//
// It needs git and nothing but the standard library.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/scanner"
	"go/token"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// self is this tool's directory: its source and tests name the forbidden
// references in order to find them.
const self = "internal/tools/doclinks/"

// forbidden are references to material outside the repository. They are
// spelled in pieces so that this list is not itself a finding when the
// tool is copied elsewhere.
var forbidden = []string{
	"../" + "shared",
	"DESIGN" + ".md",
	"STYLE" + ".md",
	"seeds" + "/",
}

// maxFile bounds what is read of one file; larger tracked files are data.
const maxFile = 4 << 20

// Problem is one finding.
type Problem struct {
	File string // slash-separated, relative to the repository root
	Line int
	Msg  string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg) }

func main() {
	dir := flag.String("C", ".", "any directory inside the repository's work tree")
	flag.Parse()
	os.Exit(run(*dir, os.Stdout, os.Stderr))
}

// run checks the repository containing dir and returns the exit status.
func run(dir string, out, errOut io.Writer) int {
	root, files, err := tracked(dir)
	if err != nil {
		fmt.Fprintln(errOut, "doclinks:", err)
		return 2
	}
	probs, err := Check(root, files)
	if err != nil {
		fmt.Fprintln(errOut, "doclinks:", err)
		return 2
	}
	for _, p := range probs {
		fmt.Fprintln(out, p)
	}
	if len(probs) > 0 {
		fmt.Fprintf(errOut, "doclinks: %d problem(s) in %d tracked files\n", len(probs), len(files))
		return 1
	}
	fmt.Fprintf(out, "doclinks: %d tracked files, no broken links, no references outside the repository\n", len(files))
	return 0
}

// tracked returns the work tree's root and its tracked files (relative,
// slash-separated).
func tracked(dir string) (string, []string, error) {
	top, err := exec.Command("git", "-C", dir, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", nil, fmt.Errorf("find the repository of %s: %w", dir, gitErr(err))
	}
	root := strings.TrimSpace(string(top))
	ls, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		return "", nil, fmt.Errorf("git ls-files: %w", gitErr(err))
	}
	var files []string
	for _, f := range bytes.Split(ls, []byte{0}) {
		if len(f) > 0 {
			files = append(files, string(f))
		}
	}
	return root, files, nil
}

func gitErr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}

// Check reads files (relative to root) and returns the problems found,
// in file and line order. A tracked file missing from the work tree (a
// deletion not yet committed) is skipped.
func Check(root string, files []string) ([]Problem, error) {
	var probs []Problem
	for _, f := range files {
		if strings.HasPrefix(f, self) {
			continue
		}
		b, err := readFile(filepath.Join(root, filepath.FromSlash(f)))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if b == nil || bytes.IndexByte(b, 0) >= 0 { // a directory, a submodule or binary data
			continue
		}
		switch {
		case strings.HasSuffix(f, ".md"):
			probs = append(probs, checkMarkdown(root, f, b)...)
			probs = append(probs, mentions(f, 1, string(b))...)
		case strings.HasSuffix(f, ".go"):
			probs = append(probs, goComments(f, b)...)
		default:
			probs = append(probs, mentions(f, 1, string(b))...)
		}
	}
	slices.SortStableFunc(probs, func(a, b Problem) int {
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		return a.Line - b.Line
	})
	return probs, nil
}

// readFile returns up to maxFile bytes of a regular file, nil for anything
// else.
func readFile(p string) ([]byte, error) {
	st, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxFile))
}

// mentions reports each forbidden reference in text, whose first line is
// line first of file.
func mentions(file string, first int, text string) []Problem {
	var probs []Problem
	for i, l := range strings.Split(text, "\n") {
		for _, bad := range forbidden {
			if strings.Contains(l, bad) {
				probs = append(probs, Problem{file, first + i, fmt.Sprintf("refers to %q, which is not part of the repository", bad)})
			}
		}
	}
	return probs
}

// goComments reports forbidden references in the comments of a Go file.
func goComments(file string, src []byte) []Problem {
	fset := token.NewFileSet()
	tf := fset.AddFile(file, -1, len(src))
	var s scanner.Scanner
	s.Init(tf, src, func(token.Position, string) {}, scanner.ScanComments)
	var probs []Problem
	for {
		pos, tok, lit := s.Scan()
		if tok == token.EOF {
			return probs
		}
		if tok == token.COMMENT {
			probs = append(probs, mentions(file, fset.Position(pos).Line, lit)...)
		}
	}
}

var (
	fence     = regexp.MustCompile("^\\s{0,3}(```|~~~)")
	codeSpan  = regexp.MustCompile("`+[^`]*`+")
	inline    = regexp.MustCompile(`\]\(\s*<?([^)<>\s]*)>?(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)`)
	reference = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?`)
	scheme    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
)

// checkMarkdown reports relative links of a Markdown file that lead
// nowhere.
func checkMarkdown(root, file string, src []byte) []Problem {
	var probs []Problem
	inFence := ""
	for i, l := range strings.Split(string(src), "\n") {
		if m := fence.FindStringSubmatch(l); m != nil {
			switch {
			case inFence == "":
				inFence = m[1]
			case inFence == m[1]:
				inFence = ""
			}
			continue
		}
		if inFence != "" {
			continue
		}
		var targets []string
		if m := reference.FindStringSubmatch(l); m != nil {
			targets = append(targets, m[1])
		}
		for _, m := range inline.FindAllStringSubmatch(codeSpan.ReplaceAllString(l, ""), -1) {
			targets = append(targets, m[1])
		}
		for _, t := range targets {
			if msg := checkTarget(root, file, t); msg != "" {
				probs = append(probs, Problem{file, i + 1, msg})
			}
		}
	}
	return probs
}

// checkTarget returns why the link target t in file leads nowhere, or "".
func checkTarget(root, file, t string) string {
	if t == "" || strings.HasPrefix(t, "#") || scheme.MatchString(t) || strings.HasPrefix(t, "//") {
		return ""
	}
	p := t
	if i := strings.IndexAny(p, "#?"); i >= 0 {
		p = p[:i]
	}
	if u, err := url.PathUnescape(p); err == nil {
		p = u
	}
	if p == "" {
		return ""
	}
	var rel string
	if strings.HasPrefix(p, "/") { // repository-absolute, as on the forges
		rel = path.Clean(strings.TrimPrefix(p, "/"))
	} else {
		rel = path.Join(path.Dir(file), p)
	}
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Sprintf("link %q leaves the repository", t)
	}
	if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel))); err != nil {
		return fmt.Sprintf("link %q: %s does not exist", t, rel)
	}
	return ""
}
