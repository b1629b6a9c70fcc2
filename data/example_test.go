package data_test

import (
	"fmt"
	"log"

	"github.com/gradlab/gradlab/data"
)

// Load the first megabyte of the Go standard library's source, draw a seeded training batch, walk the
// validation split for evaluation, and compute the unigram baseline a model's loss should beat.
func ExampleLoadGoSource() {
	corpus, err := data.LoadGoSource("", data.WithMaxBytes(1<<20))
	if err != nil {
		log.Fatal(err)
	}
	_ = corpus.Info.String() // "go-stdlib /usr/local/go/src (go1.26.8): train 114 docs 1.00 MB, ..." for reports

	train, err := data.NewSampler(corpus.Train.Text, 8, 64, 1)
	if err != nil {
		log.Fatal(err)
	}
	b := train.Next() // reused by the next call
	fmt.Println("batch", b.B, "x", b.Context, "targets shifted:", b.Targets[0] == b.Inputs[1])

	eval, err := data.NewSequential(corpus.Valid.Text, 8, 64)
	if err != nil {
		log.Fatal(err)
	}
	windows := 0
	for b, ok := eval.Next(); ok; b, ok = eval.Next() {
		windows += b.Rows
	}
	fmt.Println("every validation window seen:", windows == eval.Windows())

	bits := data.UnigramEntropyBits(corpus.Train.Text)
	fmt.Println("unigram entropy between 4 and 6 bits per byte:", bits > 4 && bits < 6)
	// Output:
	// batch 8 x 64 targets shifted: true
	// every validation window seen: true
	// unigram entropy between 4 and 6 bits per byte: true
}

// Bytes round-trip exactly through the byte-level tokenizer, valid UTF-8 or not.
func ExampleByteTokenizer() {
	var tok data.ByteTokenizer
	ids := tok.Encode(nil, []byte("Go→"))
	text, _ := tok.Decode(nil, ids)
	fmt.Println(ids, string(text), tok.VocabSize())
	// Output: [71 111 226 134 146] Go→ 256
}

// Load Fashion-MNIST when it is installed, and gather a minibatch scaled to [0, 1].
func ExampleLoadFashionMNIST() {
	if !data.FashionMNISTAvailable("") {
		return // apt-get install dataset-fashion-mnist
	}
	train, _, err := data.LoadFashionMNIST("")
	if err != nil {
		log.Fatal(err)
	}
	x, y := make([]float32, 2*train.ImageSize()), make([]int, 2)
	if err := data.Gather(train, []int{0, 1}, x, y); err != nil {
		log.Fatal(err)
	}
	fmt.Println(train.N, train.Rows, train.Cols, y, data.FashionMNISTClasses[y[0]])
}
