package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/internal/testutil"
)

// tree writes files (slash paths → content) under a new temp dir.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func strs(ps []Problem) []string {
	var ss []string
	for _, p := range ps {
		ss = append(ss, p.String())
	}
	return ss
}

// Both checks on a small tree: each broken link and each reference out of
// the repository is reported at its line, and nothing else is.
func TestCheck(t *testing.T) {
	// The forbidden words, spelled in pieces as in main.go.
	design, style, shared, seeds := "DESIGN"+".md", "STYLE"+".md", "../"+"shared", "seeds"+"/"
	files := map[string]string{
		"README.md": strings.Join([]string{
			"# demo",
			"[arch](docs/ARCH.md) and [dir](docs/) and [anchor](docs/ARCH.md#parts)", // 2: fine
			"[gone](docs/MISSING.md)",                                      // 3: broken
			"[web](https://example.com/x) [mail](mailto:a@b) [top](#demo)", // 4: not checked
			"[up](" + shared + "/" + design + ")",                          // 5: leaves the repo, and a mention
			"```",
			"[in a fence](nowhere.md)", // 7: code, not a link
			"```",
			"`[in code](nowhere.md)` and [q](docs/ARCH.md?plain=1) [sp](docs/a%20b.md)", // 9: fine
			"[ref]: docs/none.md",                             // 10: broken reference definition
			"[abs](/cmd/tool/main.go) [abs-gone](/cmd/other)", // 11: one broken
			"see " + style + " for taste",                     // 12: mention
		}, "\n"),
		"docs/ARCH.md":                    "[back](../README.md) [sib](./a%20b.md)\n",
		"docs/a b.md":                     "ok\n",
		"cmd/tool/main.go":                "// Package main, see " + design + " §3.\npackage main\n\nconst s = \"" + seeds + "000 in a string is code, not a comment\"\n\n/* from " + seeds + "001 */\nfunc main() {}\n",
		"policies/gate.rego":              "# as in " + seeds + "002\npackage x\n",
		"internal/tools/doclinks/main.go": "// " + design + " is allowed here\n",
		"bin.dat":                         "\x00" + design,
	}
	root := tree(t, files)
	got, err := Check(root, append(keys(files), "deleted/but/tracked.md"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`README.md:3: link "docs/MISSING.md": docs/MISSING.md does not exist`,
		`README.md:5: link "` + shared + `/` + design + `" leaves the repository`,
		`README.md:5: refers to "` + shared + `", which is not part of the repository`,
		`README.md:5: refers to "` + design + `", which is not part of the repository`,
		`README.md:10: link "docs/none.md": docs/none.md does not exist`,
		`README.md:11: link "/cmd/other": cmd/other does not exist`,
		`README.md:12: refers to "` + style + `", which is not part of the repository`,
		`cmd/tool/main.go:1: refers to "` + design + `", which is not part of the repository`,
		`cmd/tool/main.go:6: refers to "` + seeds + `", which is not part of the repository`,
		`policies/gate.rego:1: refers to "` + seeds + `", which is not part of the repository`,
	}
	if g := strs(got); !slices.Equal(g, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"))
	}
}

// A clean tree passes.
func TestCheckClean(t *testing.T) {
	files := map[string]string{"README.md": "[a](docs/A.md)\n", "docs/A.md": "[r](../README.md)\n", "x.go": "// fine\npackage x\n"}
	got, err := Check(tree(t, files), keys(files))
	if err != nil || len(got) != 0 {
		t.Fatalf("clean tree: %v %v", strs(got), err)
	}
}

// The program on a real git repository: only tracked files count, and the
// exit status says whether there were problems.
func TestRunOnGitRepository(t *testing.T) {
	git := testutil.Requires(t, "git")
	root := tree(t, map[string]string{
		"README.md":    "[a](docs/A.md)\n",
		"docs/A.md":    "ok\n",
		"untracked.md": "[broken](nowhere.md)\n",
	})
	sh := func(args ...string) {
		t.Helper()
		cmd := exec.Command(git, append([]string{"-C", root}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	sh("init", "-q")
	sh("add", "README.md", "docs/A.md")
	var out, errOut bytes.Buffer
	if code := run(filepath.Join(root, "docs"), &out, &errOut); code != 0 {
		t.Fatalf("clean repository: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	os.WriteFile(filepath.Join(root, "README.md"), []byte("[a](docs/B.md)\n"), 0o644)
	out.Reset()
	if code := run(root, &out, &errOut); code != 1 || !strings.Contains(out.String(), "README.md:1: link \"docs/B.md\"") {
		t.Fatalf("broken link: exit %d\n%s", code, out.String())
	}
}
