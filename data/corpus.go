package data

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/pkg/errors"
)

// DefaultValidFraction is the share of documents that goes to the validation split unless
// [WithValidFraction] says otherwise.
const DefaultValidFraction = 0.05

// Document is one unit of text a corpus is made of — a file, a fortune, a speech — and the unit that the
// train/validation split assigns as a whole.
type Document struct {
	// Name identifies the document: a path relative to the corpus root with forward slashes
	// ("net/http/server.go"), or a record key such as "art/12". The split is a function of it.
	Name string
	// Text is the document's content.
	Text []byte
}

// Span locates one loaded document (or, where the byte budget cut it, its loaded prefix) in a split's
// Text: Text[Start:End].
type Span struct {
	// Name is the document's name.
	Name string
	// Start and End delimit the document's bytes in Split.Text.
	Start, End int
}

// Split is one side of a corpus: the concatenated text of the documents assigned to it, in order, with
// the corpus separator between consecutive documents.
type Split struct {
	// Name is "train" or "valid".
	Name string
	// Text is the split's bytes; with [ByteTokenizer] it is also its token stream.
	Text []byte
	// Docs lists the loaded documents in order.
	Docs []Span
	// Assigned lists every document assigned to this split, in load order, including those a byte
	// budget left out. No name appears in both splits (except for [LoadFile], which cuts one file).
	Assigned []string
	// Truncated reports that the byte budget stopped loading before the end of Assigned.
	Truncated bool
}

// Len returns the number of bytes (byte-level tokens) in the split.
func (s *Split) Len() int { return len(s.Text) }

// Corpus is a text corpus split into training and validation text, with a record of what was loaded.
type Corpus struct {
	// Train and Valid are the two splits; either may be empty but neither is nil.
	Train, Valid *Split
	// Info records where the text came from and how much of it was loaded.
	Info Info
}

// Info records what a loader read, for experiment reports. Its String method gives a one-line
// summary; its fields marshal to JSON.
type Info struct {
	// Source names the loader: "go-stdlib", "dir", "file", "fortunes", "sotu" or "documents".
	Source string `json:"source"`
	// Path is the directory, file or tarball read ("" for in-memory documents).
	Path string `json:"path,omitempty"`
	// GoVersion is the version of the Go source tree read ("go-stdlib" only), from GOROOT/VERSION.
	GoVersion string `json:"go_version,omitempty"`
	// Patterns are the file-name patterns that selected the files.
	Patterns []string `json:"patterns,omitempty"`
	// Tests reports whether _test.go files were included.
	Tests bool `json:"tests"`
	// ValidFraction is the expected share of documents assigned to validation.
	ValidFraction float64 `json:"valid_fraction"`
	// SplitSeed salts the hash that assigns documents to splits.
	SplitSeed uint64 `json:"split_seed"`
	// MaxBytes is the byte budget over both splits (0: none).
	MaxBytes int64 `json:"max_bytes"`
	// Documents counts every document found, loaded or not.
	Documents int `json:"documents"`
	// DocumentBytes is the size of every document found, loaded or not, separators excluded.
	DocumentBytes int64 `json:"document_bytes"`
	// TrainDocs counts the documents loaded (wholly or in part) into the training split.
	TrainDocs int `json:"train_docs"`
	// ValidDocs counts the documents loaded (wholly or in part) into the validation split.
	ValidDocs int `json:"valid_docs"`
	// TrainBytes is the length of the training text, separators included.
	TrainBytes int64 `json:"train_bytes"`
	// ValidBytes is the length of the validation text, separators included.
	ValidBytes int64 `json:"valid_bytes"`
	// Truncated reports that the byte budget left some text out.
	Truncated bool `json:"truncated"`
}

// String summarises the record on one line, e.g.
// "go-stdlib /usr/local/go/src (go1.26.8): train 301 docs 1.90 MB, valid 17 docs 0.10 MB; of 4812 docs 71.03 MB; valid fraction 0.05, cap 2000000 B".
func (i Info) String() string {
	var b strings.Builder
	b.WriteString(i.Source)
	if i.Path != "" {
		b.WriteString(" " + i.Path)
	}
	if i.GoVersion != "" {
		b.WriteString(" (" + i.GoVersion + ")")
	}
	fmt.Fprintf(&b, ": train %d docs %.2f MB, valid %d docs %.2f MB; of %d docs %.2f MB; valid fraction %g",
		i.TrainDocs, float64(i.TrainBytes)/1e6, i.ValidDocs, float64(i.ValidBytes)/1e6,
		i.Documents, float64(i.DocumentBytes)/1e6, i.ValidFraction)
	if i.SplitSeed != 0 {
		fmt.Fprintf(&b, ", split seed %d", i.SplitSeed)
	}
	if i.MaxBytes > 0 {
		fmt.Fprintf(&b, ", cap %d B", i.MaxBytes)
	}
	if i.Tests && i.Source == "go-stdlib" {
		b.WriteString(", with _test.go files")
	}
	return b.String()
}

// Option configures a corpus loader.
type Option func(*config) error

type config struct {
	validFrac float64
	maxBytes  int64
	splitSeed uint64
	tests     *bool
	patterns  []string
	skipDirs  []string
	sep       *string
}

// WithValidFraction sets the expected share of documents assigned to the validation split, in [0, 1]
// (default 0.05). For [LoadFile] it is the share of the file's bytes.
func WithValidFraction(f float64) Option {
	return func(c *config) error {
		if !(f >= 0 && f <= 1) {
			return errors.Errorf("data: validation fraction %g is outside [0, 1]", f)
		}
		c.validFrac = f
		return nil
	}
}

// WithMaxBytes caps the bytes loaded over both splits at n (0: no cap). The budget is shared in
// proportion to the validation fraction — validation gets ⌈n·f⌉ bytes, training the rest — and each
// split takes the first bytes of its documents in load order (whole documents, then a prefix of the
// last), so a capped corpus is deterministic and is a prefix of the uncapped one, split by split. Files
// beyond the budget are not read.
func WithMaxBytes(n int64) Option {
	return func(c *config) error {
		if n < 0 {
			return errors.Errorf("data: negative byte cap %d", n)
		}
		c.maxBytes = n
		return nil
	}
}

// WithSplitSeed salts the hash that assigns documents to splits (default 0), for studies of the
// variance across splits. The assignment depends only on the document's name and this seed.
func WithSplitSeed(seed uint64) Option {
	return func(c *config) error { c.splitSeed = seed; return nil }
}

// WithTests chooses whether files named *_test.go are loaded: by default [LoadGoSource] leaves them out
// and [LoadDir] takes every file its patterns match.
func WithTests(include bool) Option {
	return func(c *config) error { c.tests = &include; return nil }
}

// WithPatterns chooses files by name: a file is loaded when its base name matches any of the patterns
// (path.Match syntax, e.g. "*.go", "*.txt", "*.[ch]"). Defaults: "*.go" for [LoadGoSource], every
// file for [LoadDir], every topic for [LoadFortunes], "*.txt" for [LoadSOTU].
func WithPatterns(patterns ...string) Option {
	return func(c *config) error {
		for _, p := range patterns {
			if _, err := path.Match(p, ""); err != nil {
				return errors.Wrapf(err, "data: file pattern %q", p)
			}
		}
		c.patterns = append([]string(nil), patterns...)
		return nil
	}
}

// WithSkipDirs names directories (by base name) that directory walks skip, in addition to hidden
// directories (".git") and, for [LoadGoSource], "testdata".
func WithSkipDirs(names ...string) Option {
	return func(c *config) error { c.skipDirs = append(c.skipDirs, names...); return nil }
}

// WithSeparator sets the text put between consecutive documents of a split. Default: none, except
// [LoadFortunes], which puts "%\n" between records as the fortune files do.
func WithSeparator(sep string) Option {
	return func(c *config) error { c.sep = &sep; return nil }
}

func newConfig(opts []Option) (*config, error) {
	c := &config{validFrac: DefaultValidFraction}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *config) separator(def string) []byte {
	if c.sep != nil {
		return []byte(*c.sep)
	}
	return []byte(def)
}

func (c *config) includeTests(def bool) bool {
	if c.tests != nil {
		return *c.tests
	}
	return def
}

// budgets returns the byte budgets of the training and validation splits (-1: unlimited).
func (c *config) budgets() (train, valid int64) {
	if c.maxBytes == 0 {
		return -1, -1
	}
	valid = int64(math.Ceil(float64(c.maxBytes) * c.validFrac))
	if valid > c.maxBytes {
		valid = c.maxBytes
	}
	return c.maxBytes - valid, valid
}

// IsValidation reports whether the document called name belongs to the validation split for the
// given validation fraction and split seed. It is a pure function of its arguments: a hash of the seed
// and the name, mapped uniformly to [0, 1) and compared with fraction.
func IsValidation(name string, fraction float64, seed uint64) bool {
	if fraction <= 0 {
		return false
	}
	if fraction >= 1 {
		return true
	}
	h := fnv.New64a()
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	h.Write(s[:])
	h.Write([]byte(name))
	x := h.Sum64()
	// SplitMix64's finaliser spreads FNV's weak high bits.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11)/(1<<53) < fraction
}

// item is one document to load: from memory (data) or from a file (file), whose size is known.
type item struct {
	name string
	size int64
	file string
	data []byte
}

// assemble concatenates items into a split, stopping at budget bytes (-1: no limit).
func assemble(name string, items []item, budget int64, sep []byte) (*Split, error) {
	s := &Split{Name: name, Assigned: make([]string, len(items))}
	var total int64
	for i, it := range items {
		s.Assigned[i] = it.name
		total += it.size
		if i > 0 {
			total += int64(len(sep))
		}
	}
	if budget >= 0 && total > budget {
		total = budget
	}
	s.Text = make([]byte, 0, total+1) // +1: reading the last file to EOF needs no growth
	rem := budget
	take := func(n int64) int64 {
		if budget < 0 || n <= rem {
			return n
		}
		return rem
	}
	for i, it := range items {
		if i > 0 && len(sep) > 0 {
			k := take(int64(len(sep)))
			s.Text = append(s.Text, sep[:k]...)
			rem -= k
			if k < int64(len(sep)) {
				s.Truncated = true
				break
			}
		}
		if budget >= 0 && rem == 0 && it.size > 0 {
			s.Truncated = true
			break
		}
		start := len(s.Text)
		var cut bool
		if it.file == "" {
			k := take(int64(len(it.data)))
			s.Text = append(s.Text, it.data[:k]...)
			cut = k < int64(len(it.data))
		} else {
			var err error
			if s.Text, cut, err = appendFile(s.Text, it.file, budget, rem); err != nil {
				return nil, err
			}
		}
		if budget >= 0 {
			rem -= int64(len(s.Text) - start)
		}
		s.Docs = append(s.Docs, Span{Name: it.name, Start: start, End: len(s.Text)})
		if cut {
			s.Truncated = true
			break
		}
	}
	return s, nil
}

// appendFile appends the contents of file to dst, at most rem bytes when budget >= 0, and reports
// whether the file had more.
func appendFile(dst []byte, file string, budget, rem int64) ([]byte, bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return dst, false, errors.Wrap(err, "data")
	}
	defer f.Close()
	var r io.Reader = f
	if budget >= 0 {
		r = io.LimitReader(f, rem+1)
	}
	start := len(dst)
	for {
		if len(dst) == cap(dst) {
			dst = append(dst[:cap(dst)], 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return dst[:start], false, errors.Wrapf(err, "data: reading %s", file)
		}
	}
	if budget >= 0 && int64(len(dst)-start) > rem {
		return dst[:start+int(rem)], true, nil
	}
	return dst, false, nil
}

// build splits items by name and assembles both splits under the configured budget.
func build(info Info, c *config, items []item, sep []byte) (*Corpus, error) {
	var tr, va []item
	for _, it := range items {
		info.DocumentBytes += it.size
		if IsValidation(it.name, c.validFrac, c.splitSeed) {
			va = append(va, it)
		} else {
			tr = append(tr, it)
		}
	}
	info.Documents = len(items)
	return finish(info, c, tr, va, sep)
}

func finish(info Info, c *config, tr, va []item, sep []byte) (*Corpus, error) {
	bt, bv := c.budgets()
	train, err := assemble("train", tr, bt, sep)
	if err != nil {
		return nil, err
	}
	valid, err := assemble("valid", va, bv, sep)
	if err != nil {
		return nil, err
	}
	info.ValidFraction = c.validFrac
	info.SplitSeed = c.splitSeed
	info.MaxBytes = c.maxBytes
	info.TrainDocs, info.ValidDocs = len(train.Docs), len(valid.Docs)
	info.TrainBytes, info.ValidBytes = int64(len(train.Text)), int64(len(valid.Text))
	info.Truncated = train.Truncated || valid.Truncated
	return &Corpus{Train: train, Valid: valid, Info: info}, nil
}

// GoRoot returns the root of the Go installation: runtime.GOROOT() when it names a directory with a
// src/ folder (it honours $GOROOT), otherwise the output of `go env GOROOT`.
func GoRoot() (string, error) {
	//lint:ignore SA1019 the documented fallback below covers binaries built with -trimpath.
	if r := runtime.GOROOT(); r != "" && isDir(filepath.Join(r, "src")) {
		return r, nil
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", errors.Wrap(err, "data: runtime.GOROOT() is unset and `go env GOROOT` failed")
	}
	r := strings.TrimSpace(string(out))
	if !isDir(filepath.Join(r, "src")) {
		return "", errors.Errorf("data: GOROOT %q has no src directory", r)
	}
	return r, nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// goVersion reads the version of the Go tree at root from its VERSION file, falling back to the
// running binary's version.
func goVersion(root string) string {
	if b, err := os.ReadFile(filepath.Join(root, "VERSION")); err == nil {
		if line, _, _ := strings.Cut(string(b), "\n"); strings.HasPrefix(line, "go") {
			return strings.TrimSpace(line)
		}
	}
	return runtime.Version()
}

// LoadGoSource loads the Go standard library's source, $(GOROOT)/src, as a text corpus: every *.go
// file (sorted by path relative to src, with forward slashes), testdata/ and hidden directories
// skipped, _test.go files only with WithTests(true). goroot "" means [GoRoot]. Documents are split by
// file; Info records the Go version of the tree.
func LoadGoSource(goroot string, opts ...Option) (*Corpus, error) {
	if goroot == "" {
		var err error
		if goroot, err = GoRoot(); err != nil {
			return nil, err
		}
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if c.patterns == nil {
		c.patterns = []string{"*.go"}
	}
	c.skipDirs = append(c.skipDirs, "testdata")
	src := filepath.Join(goroot, "src")
	corp, err := loadDir(src, "go-stdlib", c, c.includeTests(false))
	if err != nil {
		return nil, err
	}
	corp.Info.GoVersion = goVersion(goroot)
	return corp, nil
}

// LoadDir loads the files under dir whose base names match the patterns ([WithPatterns]; default
// every file), hidden files and directories and the [WithSkipDirs] directories skipped, symbolic links
// to regular files followed. Files are sorted by path relative to dir and split by file.
func LoadDir(dir string, opts ...Option) (*Corpus, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return loadDir(dir, "dir", c, c.includeTests(true))
}

func loadDir(root, source string, c *config, tests bool) (*Corpus, error) {
	if !isDir(root) {
		return nil, errors.Errorf("data: %s is not a directory", root)
	}
	skip := map[string]bool{}
	for _, d := range c.skipDirs {
		skip[d] = true
	}
	var items []item
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || skip[name]) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(name, ".") || !matchAny(c.patterns, name) ||
			(!tests && strings.HasSuffix(name, "_test.go")) {
			return nil
		}
		fi, err := os.Stat(p) // follows symbolic links
		if err != nil || !fi.Mode().IsRegular() {
			return nil // dangling link, device, directory link: not text
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		items = append(items, item{name: filepath.ToSlash(rel), size: fi.Size(), file: p})
		return nil
	})
	if err != nil {
		return nil, errors.Wrapf(err, "data: walking %s", root)
	}
	sort.Slice(items, func(i, j int) bool { return items[i].name < items[j].name })
	info := Info{Source: source, Path: root, Patterns: c.patterns, Tests: tests}
	return build(info, c, items, c.separator(""))
}

// matchAny reports whether name matches one of patterns; no patterns match everything.
func matchAny(patterns []string, name string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// LoadFile loads one text file. A single file cannot be split by file, so the validation split is its
// tail: the last ⌈f·n⌉ bytes of its n, moved forward to the next line start when there is one.
func LoadFile(file string, opts ...Option) (*Corpus, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	text, err := os.ReadFile(file)
	if err != nil {
		return nil, errors.Wrap(err, "data")
	}
	n := len(text)
	cut := n - int(math.Ceil(float64(n)*c.validFrac))
	if cut > 0 && cut < n && text[cut-1] != '\n' {
		if i := bytes.IndexByte(text[cut:], '\n'); i >= 0 && cut+i+1 < n {
			cut += i + 1
		}
	}
	name := filepath.Base(file)
	var tr, va []item
	if cut > 0 {
		tr = []item{{name: name, size: int64(cut), data: text[:cut]}}
	}
	if cut < n {
		va = []item{{name: name, size: int64(n - cut), data: text[cut:]}}
	}
	info := Info{Source: "file", Path: file, Documents: 1, DocumentBytes: int64(n)}
	return finish(info, c, tr, va, nil)
}

// FromDocuments builds a corpus from documents held in memory, in the order given, split by name like
// the file loaders. The corpus copies the documents' bytes.
func FromDocuments(docs []Document, opts ...Option) (*Corpus, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	items := make([]item, len(docs))
	for i, d := range docs {
		items[i] = item{name: d.Name, size: int64(len(d.Text)), data: d.Text}
	}
	return build(Info{Source: "documents"}, c, items, c.separator(""))
}
