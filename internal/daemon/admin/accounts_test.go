package admin

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParsePeople(t *testing.T) {
	got, err := ParsePeople([]string{"otto=operator"}, []byte("# first operators\nsam=secadmin\n  kim = keyadmin,auditor,keyadmin  # two roles\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Person{{"sam", []string{"secadmin"}}, {"kim", []string{"keyadmin", "auditor"}}, {"otto", []string{"operator"}}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i].Name != want[i].Name || !slices.Equal(got[i].Roles, want[i].Roles) {
			t.Fatalf("person %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []struct {
		args []string
		file string
		says string
	}{
		{nil, "", "no people given"},
		{[]string{"sam"}, "", "NAME=ROLE"},
		{[]string{"Sam=secadmin"}, "", "login name"},
		{[]string{"../x=secadmin"}, "", "login name"},
		{[]string{"sam=root"}, "", `unknown role "root"`},
		{[]string{"sam=secadmin", "sam=auditor"}, "", "listed twice"},
		{nil, "sam=secadmin\nbob=\n", "line 2"},
	} {
		_, err := ParsePeople(bad.args, []byte(bad.file))
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("%v %q: %v, want one saying %q", bad.args, bad.file, err, bad.says)
		}
	}
}

// fakeSystem is an account database InitAccounts creates accounts in.
type fakeSystem struct {
	uids    map[string]int
	next    int
	created []string
}

func (f *fakeSystem) lookup(name string) (int, error) {
	if uid, ok := f.uids[name]; ok {
		return uid, nil
	}
	return 0, ErrNoSuchAccount
}

func (f *fakeSystem) create(name, comment string) error {
	if !strings.HasPrefix(comment, "e2sgate ") {
		return errors.New("no comment")
	}
	f.uids[name] = f.next
	f.next++
	f.created = append(f.created, name)
	return nil
}

func TestInitAccounts(t *testing.T) {
	dir := t.TempDir()
	book := filepath.Join(dir, "admin", "roles.yaml")
	sys := &fakeSystem{uids: map[string]int{"root": 0, "sam": 1000, "gate": 64000}, next: 1001}
	opts := func(people []Person, force bool) InitOptions {
		return InitOptions{Path: book, People: people, Force: force, Lookup: sys.lookup, Create: sys.create,
			Reserved: map[int]string{64000: "gate agent"}}
	}
	people := []Person{{"sam", []string{"secadmin"}}, {"sue", []string{"secadmin"}}, {"otto", []string{"operator", "auditor"}}}

	// Root and the appliance's own accounts are refused before anything is made.
	for _, p := range []Person{{"root", []string{"secadmin"}}, {"gate", []string{"operator"}}} {
		if _, err := InitAccounts(opts(append(slices.Clone(people), p), false)); !errors.Is(err, ErrBadRequest) || len(sys.created) != 0 {
			t.Fatalf("%s: %v (created %v)", p.Name, err, sys.created)
		}
	}
	if _, err := os.Stat(book); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused init wrote the book: %v", err)
	}

	// The supervisor's first start leaves an empty book: that is no clobbering.
	os.MkdirAll(filepath.Dir(book), 0o700)
	os.WriteFile(book, []byte("version: 1\naccounts: []\n"), 0o600)
	rep, err := InitAccounts(opts(people, false))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sys.created, []string{"sue", "otto"}) || !slices.Equal(rep.Created, sys.created) {
		t.Fatalf("created %v, report %v; want sue and otto (sam exists)", sys.created, rep.Created)
	}
	fi, err := os.Stat(book)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("book %v %v, want 0600", fi, err)
	}
	b, _ := os.ReadFile(book)
	accs, err := ParseRoles(b)
	if err != nil || len(accs) != 3 {
		t.Fatalf("book %s: %v", b, err)
	}
	for i, want := range []Account{{1000, "sam", []string{"secadmin"}}, {1001, "sue", []string{"secadmin"}}, {1002, "otto", []string{"operator", "auditor"}}} {
		if accs[i].UID != want.UID || accs[i].Name != want.Name || !slices.Equal(accs[i].Roles, want.Roles) {
			t.Fatalf("account %d = %+v, want %+v", i, accs[i], want)
		}
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "keyadmin has 0") {
		t.Fatalf("warnings %v, want keyadmin's only", rep.Warnings)
	}
	u := rep.Usage("/usr/bin/e2sctl")
	if !strings.Contains(u, "runuser -u otto -- /usr/bin/e2sctl whoami") || !strings.Contains(u, "operator,auditor") {
		t.Fatalf("usage:\n%s", u)
	}

	// A book that names accounts is kept, and nothing is created...
	if _, err := InitAccounts(opts([]Person{{"eve", []string{"secadmin"}}}, false)); !errors.Is(err, ErrBookExists) {
		t.Fatalf("second init: %v", err)
	}
	if b2, _ := os.ReadFile(book); string(b2) != string(b) || sys.uids["eve"] != 0 {
		t.Fatalf("second init changed the book or made eve:\n%s", b2)
	}
	// ...unless asked.
	rep, err = InitAccounts(opts([]Person{{"sam", []string{"secadmin", "keyadmin"}}}, true))
	if err != nil || len(rep.Replaced) != 3 || len(rep.Created) != 0 {
		t.Fatalf("forced init: %v %+v", err, rep)
	}
	b, _ = os.ReadFile(book)
	if accs, err := ParseRoles(b); err != nil || len(accs) != 1 || !slices.Equal(accs[0].Roles, []string{"secadmin", "keyadmin"}) {
		t.Fatalf("forced book %s: %v", b, err)
	}
}
