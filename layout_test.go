// Package wsgate_test checks the layout's rule of dependency (DESIGN.md):
// the product (functions/, shared/) and the Go client (clients/go) never
// import the emulator or the developer tools under localstack/, not even
// from their tests; localstack/ imports shared/, never the other way.
package wsgate_test

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// productPatterns are the packages that must not depend on localstack/.
var productPatterns = []string{"./functions/...", "./shared/...", "./clients/go/..."}

const localstackPrefix = "github.com/wsgate/wsgate/localstack/"

func TestLayout_ProductNeverImportsLocalstack(t *testing.T) {
	// -test adds each package's test variants and test binaries, so a
	// _test.go file importing localstack/ counts too; -deps adds every
	// package they pull in, so an indirect import counts as well.
	args := append([]string{"list", "-e", "-deps", "-test",
		"-f", "{{.ImportPath}}\t{{join .Imports \" \"}}\t{{with .Error}}{{.}}{{end}}"}, productPatterns...)
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	listed := 0
	reported := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		fields := strings.Split(strings.TrimRight(line, "\n"), "\t")
		if len(fields) != 3 {
			t.Fatalf("go list: unexpected line %q", line)
		}
		// A test variant reads "pkg [pkg.test]": one report per package.
		pkg, _, _ := strings.Cut(fields[0], " ")
		listed++
		if fields[2] != "" {
			t.Errorf("%s: %s", pkg, fields[2])
		}
		if strings.HasPrefix(pkg, localstackPrefix) {
			continue // reported through its importer below
		}
		for _, imp := range strings.Fields(fields[1]) {
			if strings.HasPrefix(imp, localstackPrefix) && !reported[pkg+" "+imp] {
				reported[pkg+" "+imp] = true
				t.Errorf("%s imports %s: product code and its tests may not depend on localstack/ (move the helper to shared/ or the test to localstack/)", pkg, imp)
			}
		}
	}
	if listed < 20 {
		t.Fatalf("go list named only %d packages for %v: the patterns no longer match the layout", listed, productPatterns)
	}
}
