package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// idxBytes encodes an unsigned-byte IDX file.
func idxBytes(dims []int, data []byte) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 0, IDXUbyte, byte(len(dims))})
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, uint32(d))
	}
	b.Write(data)
	return b.Bytes()
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func write(t *testing.T, file string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// tiny is a 3-image 2×2 data set with labels 7, 0, 255.
var (
	tinyPixels = []byte{0, 255, 51, 102, 1, 2, 3, 4, 200, 100, 50, 25}
	tinyLabels = []byte{7, 0, 255}
)

func TestIDXRoundTrip(t *testing.T) {
	dir := t.TempDir()
	im, lb := idxBytes([]int{3, 2, 2}, tinyPixels), idxBytes([]int{3}, tinyLabels)
	for _, compress := range []bool{false, true} {
		ib, lbb := im, lb
		suffix := ""
		if compress {
			ib, lbb, suffix = gz(t, im), gz(t, lb), ".gz"
		}
		d, err := LoadIDX(write(t, filepath.Join(dir, "im"+suffix), ib), write(t, filepath.Join(dir, "lb"+suffix), lbb))
		if err != nil {
			t.Fatal(err)
		}
		if d.N != 3 || d.Rows != 2 || d.Cols != 2 || d.ImageSize() != 4 || !bytes.Equal(d.Pixels, tinyPixels) ||
			!slices.Equal(d.Labels, []int{7, 0, 255}) || d.Classes() != 256 || !bytes.Equal(d.Image(1), []byte{1, 2, 3, 4}) {
			t.Fatalf("gzip %v: %+v", compress, d)
		}
		f32, f64 := d.Float32(), d.Float64()
		for i, p := range tinyPixels {
			if f32[i] != float32(p)/255 || f64[i] != float64(p)/255 || f64[i] < 0 || f64[i] > 1 {
				t.Fatalf("pixel %d: %v %v", i, f32[i], f64[i])
			}
		}
		x, y := make([]float32, 2*4), make([]int, 2)
		if err := Gather(d, []int{2, 0}, x, y); err != nil || x[0] != 200.0/255 || x[5] != 1 || !slices.Equal(y, []int{255, 7}) {
			t.Fatalf("gather %v %v %v", err, x, y)
		}
		if err := Gather(d, []int{3}, x[:4], y[:1]); err == nil {
			t.Fatal("gather out of range accepted")
		}
		if err := Gather(d, []int{0}, x, y); err == nil {
			t.Fatal("gather with wrong buffer sizes accepted")
		}
		if n := testing.AllocsPerRun(10, func() { Gather(d, []int{1, 2}, x, y) }); n != 0 {
			t.Fatalf("gather allocates %v", n)
		}
	}
}

func TestIDXCorrupt(t *testing.T) {
	good := idxBytes([]int{3, 2, 2}, tinyPixels)
	big := make([]byte, 4000)
	for i := range big {
		big[i] = byte(i * i >> 3)
	}
	bigGz := gz(t, idxBytes([]int{10, 20, 20}, big))
	crc := gz(t, good)
	crc[len(crc)-6] ^= 0xff // the CRC-32 in the gzip trailer
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated header"},
		{"short magic", good[:3], "truncated header"},
		{"short dims", good[:9], "truncated header"},
		{"wrong magic", append([]byte{0x12, 0x34}, good[2:]...), "wrong magic"},
		{"float data", append([]byte{0, 0, 0x0d}, good[3:]...), "unsupported data type"},
		{"no dims", []byte{0, 0, 8, 0}, "zero dimensions"},
		{"truncated data", good[:len(good)-1], "truncated: the header declares 12 data bytes, the file holds 11"},
		{"trailing data", append(slices.Clone(good), 9, 9), "size mismatch: 2 bytes follow"},
		{"truncated gzip header", gz(t, good)[:20], "truncated header"},
		{"truncated gzip data", gz(t, good)[:len(gz(t, good))-12], "truncated"},
		{"gzip checksum", crc, "checksum"},
		{"gzip cut in the data", bigGz[:len(bigGz)/2], "truncated: the header declares 4000 data bytes, the file holds"},
		{"huge dims", idxBytes([]int{1 << 30, 1 << 30, 1 << 30}, nil), "declare more than"},
		{"gzipped garbage", []byte{0x1f, 0x8b, 1, 2, 3}, "gzip"},
	}
	for _, c := range cases {
		_, err := ReadIDX(bytes.NewReader(c.b))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	// Well-formed files that do not pair up.
	dir := t.TempDir()
	im := write(t, filepath.Join(dir, "im"), good)
	for _, c := range []struct {
		labels []byte
		want   string
	}{
		{idxBytes([]int{2}, []byte{1, 2}), "3 images but 2 labels"},
		{idxBytes([]int{3, 1}, []byte{1, 2, 3}), "labels need 1 dimension"},
	} {
		if _, err := LoadIDX(im, write(t, filepath.Join(dir, "lb"), c.labels)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want %q", err, c.want)
		}
	}
	if _, err := LoadIDX(write(t, filepath.Join(dir, "lb1"), idxBytes([]int{3}, tinyLabels)), im); err == nil ||
		!strings.Contains(err.Error(), "images need 3 dimensions") {
		t.Errorf("swapped files: %v", err)
	}
	if _, err := ReadIDXFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestIDXDirAndTarball(t *testing.T) {
	dir := t.TempDir()
	if FashionMNISTAvailable(dir) {
		t.Fatal("empty directory reported available")
	}
	if _, _, err := LoadFashionMNIST(dir); err == nil {
		t.Fatal("empty directory loaded")
	}
	im, lb := idxBytes([]int{3, 2, 2}, tinyPixels), idxBytes([]int{3}, tinyLabels)
	teIm, teLb := idxBytes([]int{1, 2, 2}, tinyPixels[:4]), idxBytes([]int{1}, tinyLabels[:1])
	// A mix of gzipped and raw files.
	write(t, filepath.Join(dir, "train-images-idx3-ubyte.gz"), gz(t, im))
	write(t, filepath.Join(dir, "train-labels-idx1-ubyte"), lb)
	write(t, filepath.Join(dir, "t10k-images-idx3-ubyte"), teIm)
	if FashionMNISTAvailable(dir) {
		t.Fatal("three files reported available")
	}
	write(t, filepath.Join(dir, "t10k-labels-idx1-ubyte.gz"), gz(t, teLb))
	if !FashionMNISTAvailable(dir) {
		t.Fatal("four files reported absent")
	}
	tr, te, err := LoadFashionMNIST(dir)
	if err != nil || tr.N != 3 || te.N != 1 || !slices.Equal(tr.Labels, []int{7, 0, 255}) || te.Labels[0] != 7 {
		t.Fatalf("%v %+v %+v", err, tr, te)
	}

	file := filepath.Join(dir, "mnist.tgz")
	write(t, file, tgz(t, [][2]string{
		{"package/", ""}, {"package/data/", ""},
		{"package/data/train-images-idx3-ubyte", string(im)},
		{"package/data/train-labels-idx1-ubyte", string(lb)},
		{"package/data/t10k-images-idx3-ubyte.gz", string(gz(t, teIm))},
		{"package/data/t10k-labels-idx1-ubyte", string(teLb)},
		{"package/README.md", "MNIST"},
	}))
	tr, te, err = LoadMNISTTarball(file)
	if err != nil || tr.N != 3 || te.N != 1 || !bytes.Equal(tr.Pixels, tinyPixels) {
		t.Fatalf("tarball: %v %+v %+v", err, tr, te)
	}
	write(t, file, tgz(t, [][2]string{{"package/data/train-images-idx3-ubyte", string(im)}}))
	if _, _, err := LoadMNISTTarball(file); err == nil || !strings.Contains(err.Error(), "has no train-labels") {
		t.Fatalf("incomplete tarball: %v", err)
	}
	write(t, file, tgz(t, [][2]string{
		{"package/data/train-images-idx3-ubyte", string(im[:len(im)-1])},
	}))
	if _, _, err := LoadMNISTTarball(file); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("corrupt tarball entry: %v", err)
	}
}

func TestFashionMNISTInstalled(t *testing.T) {
	if !FashionMNISTAvailable("") {
		t.Skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
	}
	tr, te, err := LoadFashionMNIST("")
	if err != nil {
		t.Fatal(err)
	}
	if tr.N != 60000 || te.N != 10000 || tr.Rows != 28 || tr.Cols != 28 || te.Rows != 28 || tr.Classes() != 10 || te.Classes() != 10 {
		t.Fatalf("train %d×%d×%d, test %d", tr.N, tr.Rows, tr.Cols, te.N)
	}
	if got := tr.Labels[:10]; !slices.Equal(got, []int{9, 0, 0, 3, 0, 2, 7, 2, 5, 5}) {
		t.Fatalf("first training labels %v", got)
	}
	var perClass [10]int
	for _, l := range tr.Labels {
		perClass[l]++
	}
	if perClass != [10]int{6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000} {
		t.Fatalf("class counts %v", perClass)
	}
}
