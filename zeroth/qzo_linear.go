package zeroth

import (
	"fmt"
	"hash"
	"hash/fnv"
	"math"

	"github.com/chewxy/hm"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/internal/graphop"
	"github.com/gradlab/gradlab/solvers"
)

// QuantBits is the width of the integer codes of a QuantizedLinear.
type QuantBits int

const (
	// Int4 packs two signed 4-bit codes per byte (symmetric range −7..7, asymmetric −8..7).
	Int4 QuantBits = 4
	// Int8 stores one signed 8-bit code per byte (symmetric range −127..127, asymmetric −128..127).
	Int8 QuantBits = 8
)

// qmaxSym is the largest code magnitude of symmetric quantisation: 7 for int4, 127 for int8.
func (b QuantBits) qmaxSym() int { return 1<<(int(b)-1) - 1 }

// QuantizedLinear is a linear layer y = x·W (gradlab layout: W is (in, out)) whose weights are held as
// frozen integer codes w̄ and one continuous scale per group of g consecutive input weights of an output
// column (REFERENCE §2.10; the quantiser of QZO, Shang et al., "Fine-tuning Quantized Neural Networks with
// Zeroth-order Optimization", arXiv 2505.13430, §3: w = Δ·w̄):
//
//	W[i, j] = Δ[i/g, j] · (w̄[i, j] − z[i/g, j])        (z = 0 for symmetric quantisation)
//
// The codes are packed in memory (int4: two per byte, element k = i·out + j in the low nibble when k is
// even, the high nibble when odd; int8: one per byte) and dequantised on the fly in the forward pass by a
// custom Gorgonia op; the zero points z (asymmetric only) are frozen int8s. The scales Δ, shape
// (in/g, out), are the only float parameters: a named graph input (ScaleNode) sharing its backing array
// with Scales(), so in-place updates by QZO are picked up by a compiled machine. The op has exact
// gradients with respect to the scales (∂L/∂Δ[G, j] = Σ_{i∈G} ∂L/∂W[i, j]·(w̄[i, j] − z)) and, through the
// matrix product, with respect to x, for first-order baselines and tests.
type QuantizedLinear struct {
	name           string
	in, out, group int
	bits           QuantBits
	codes          []byte
	zeros          []int8 // nil when symmetric; one per group, row-major (in/g, out)
	scales         *tensor.Dense
	codeHash       uint64
	nodes          map[*G.ExprGraph]*G.Node
}

// QuantOption configures post-training quantisation (Quantize).
type QuantOption func(*quantConfig)

type quantConfig struct{ asym bool }

// WithZeroPoint makes the quantisation asymmetric with one frozen integer zero point per group:
// Δ = (max(w, 0) − min(w, 0))/(2^b − 1), z = round(q_min − min(w, 0)/Δ) clamped to the code range, and
// w̄ = clamp(round(w/Δ) + z) (GPTQ's quantiser with zero included in the range). The default is symmetric.
func WithZeroPoint() QuantOption { return func(c *quantConfig) { c.asym = true } }

// Quantize quantises the trained float weight matrix w (in, out), float32 or float64, by round-to-nearest
// (ties to even, as torch.round) with one scale per group of group consecutive input rows of each output
// column: symmetric Δ = max|w|/7 (int4) or max|w|/127 (int8) per group, w̄ = clamp(round(w/Δ), −q, q)
// (REFERENCE §2.10; QZO fine-tunes the scales of such RTN, GPTQ or AWQ models). The scales take w's dtype;
// a group whose weights are all zero gets Δ = 0 and codes 0. Every weight is reproduced within Δ/2
// (symmetric) or Δ (asymmetric: the rounded zero point can push an extreme weight one step out of range).
func Quantize(name string, w *tensor.Dense, bits QuantBits, group int, opts ...QuantOption) (*QuantizedLinear, error) {
	var cfg quantConfig
	for _, o := range opts {
		o(&cfg)
	}
	if w == nil || w.Shape().Dims() != 2 {
		return nil, errors.New("zeroth.Quantize: want a 2-D (in, out) weight matrix")
	}
	if err := graphop.CheckFloat(w.Dtype()); err != nil {
		return nil, errors.Wrap(err, "zeroth.Quantize")
	}
	in, out := w.Shape()[0], w.Shape()[1]
	q, err := newQL(name, in, out, bits, group, w.Dtype(), cfg.asym)
	if err != nil {
		return nil, err
	}
	var src []float64
	switch w.Dtype() {
	case tensor.Float64:
		src = append([]float64(nil), graphop.SliceOf[float64](w)...)
	case tensor.Float32:
		for _, v := range graphop.SliceOf[float32](w) {
			src = append(src, float64(v))
		}
	}
	ng := in / group
	lo, hi := -(1 << (int(bits) - 1)), 1<<(int(bits)-1)-1
	for gi := 0; gi < ng; gi++ {
		for j := 0; j < out; j++ {
			var d float64
			z := 0
			if !cfg.asym {
				m := 0.0
				for i := gi * group; i < (gi+1)*group; i++ {
					m = math.Max(m, math.Abs(src[i*out+j]))
				}
				d = m / float64(bits.qmaxSym())
				lo, hi = -bits.qmaxSym(), bits.qmaxSym()
			} else {
				mn, mx := 0.0, 0.0
				for i := gi * group; i < (gi+1)*group; i++ {
					mn, mx = math.Min(mn, src[i*out+j]), math.Max(mx, src[i*out+j])
				}
				d = (mx - mn) / float64(int(1)<<int(bits)-1)
				if d > 0 {
					z = clampInt(int(math.RoundToEven(float64(lo)-mn/d)), lo, hi)
				}
				q.zeros[gi*out+j] = int8(z)
			}
			q.setScale(gi*out+j, d)
			d = q.scaleAt(gi*out + j) // round to the storage dtype before coding
			for i := gi * group; i < (gi+1)*group; i++ {
				c := z
				if d > 0 {
					c = clampInt(int(math.RoundToEven(src[i*out+j]/d))+z, lo, hi)
				}
				q.setCode(i*out+j, c)
			}
		}
	}
	q.codeHash = hashBytes(q.codes, q.zeros)
	return q, nil
}

// NewQuantizedLinear builds a layer from explicit codes (row-major (in, out), each within the signed range
// of bits), scales ((in/group)·out values, float32 or float64 slice, copied) and optional zero points
// (nil for symmetric, else one per group).
func NewQuantizedLinear(name string, in, out int, bits QuantBits, group int, codes []int8, scales interface{}, zeros []int8) (*QuantizedLinear, error) {
	var dt tensor.Dtype
	switch scales.(type) {
	case []float64:
		dt = tensor.Float64
	case []float32:
		dt = tensor.Float32
	default:
		return nil, errors.Errorf("zeroth.NewQuantizedLinear: scales of type %T (want []float32 or []float64)", scales)
	}
	q, err := newQL(name, in, out, bits, group, dt, zeros != nil)
	if err != nil {
		return nil, err
	}
	if len(codes) != in*out {
		return nil, errors.Errorf("zeroth.NewQuantizedLinear: %d codes for a %d×%d matrix", len(codes), in, out)
	}
	ns := (in / group) * out
	lo, hi := -(1 << (int(bits) - 1)), 1<<(int(bits)-1)-1
	for k, c := range codes {
		if int(c) < lo || int(c) > hi {
			return nil, errors.Errorf("zeroth.NewQuantizedLinear: code %d at %d outside [%d, %d]", c, k, lo, hi)
		}
		q.setCode(k, int(c))
	}
	switch s := scales.(type) {
	case []float64:
		if len(s) != ns {
			return nil, errors.Errorf("zeroth.NewQuantizedLinear: %d scales, want %d", len(s), ns)
		}
		copy(q.scales.Float64s(), s)
	case []float32:
		if len(s) != ns {
			return nil, errors.Errorf("zeroth.NewQuantizedLinear: %d scales, want %d", len(s), ns)
		}
		copy(q.scales.Float32s(), s)
	}
	if zeros != nil {
		if len(zeros) != ns {
			return nil, errors.Errorf("zeroth.NewQuantizedLinear: %d zero points, want %d", len(zeros), ns)
		}
		for k, z := range zeros {
			if int(z) < lo || int(z) > hi {
				return nil, errors.Errorf("zeroth.NewQuantizedLinear: zero point %d at %d outside [%d, %d]", z, k, lo, hi)
			}
		}
		copy(q.zeros, zeros)
	}
	q.codeHash = hashBytes(q.codes, q.zeros)
	return q, nil
}

func newQL(name string, in, out int, bits QuantBits, group int, dt tensor.Dtype, asym bool) (*QuantizedLinear, error) {
	switch {
	case name == "":
		return nil, errors.New("zeroth: a quantized layer needs a name (it names the scale node)")
	case bits != Int4 && bits != Int8:
		return nil, errors.Errorf("zeroth: %d-bit codes not supported (int4, int8 are)", bits)
	case in < 1 || out < 1:
		return nil, errors.Errorf("zeroth: bad layer shape %d×%d", in, out)
	case group < 1 || in%group != 0:
		return nil, errors.Errorf("zeroth: group size %d must divide the input dimension %d", group, in)
	}
	n := in * out
	nb := n
	if bits == Int4 {
		nb = (n + 1) / 2
	}
	q := &QuantizedLinear{name: name, in: in, out: out, group: group, bits: bits, codes: make([]byte, nb),
		scales: tensor.New(tensor.WithShape(in/group, out), tensor.Of(dt))}
	if asym {
		q.zeros = make([]int8, (in/group)*out)
	}
	return q, nil
}

func clampInt(v, lo, hi int) int { return min(max(v, lo), hi) }

func hashBytes(b []byte, z []int8) uint64 {
	h := fnv.New64a()
	h.Write(b)
	for _, v := range z {
		h.Write([]byte{byte(v)})
	}
	return h.Sum64()
}

func (q *QuantizedLinear) setCode(k, c int) {
	if q.bits == Int8 {
		q.codes[k] = byte(int8(c))
		return
	}
	nib := byte(c) & 0x0f
	if k&1 == 0 {
		q.codes[k>>1] = q.codes[k>>1]&0xf0 | nib
	} else {
		q.codes[k>>1] = q.codes[k>>1]&0x0f | nib<<4
	}
}

// codeAt unpacks code k (row-major (in, out) index) as a signed integer.
func (q *QuantizedLinear) codeAt(k int) int {
	if q.bits == Int8 {
		return int(int8(q.codes[k]))
	}
	b := q.codes[k>>1]
	if k&1 == 0 {
		return int(int8(b<<4) >> 4)
	}
	return int(int8(b) >> 4)
}

func (q *QuantizedLinear) setScale(k int, v float64) {
	if q.scales.Dtype() == tensor.Float64 {
		q.scales.Float64s()[k] = v
	} else {
		q.scales.Float32s()[k] = float32(v)
	}
}

func (q *QuantizedLinear) scaleAt(k int) float64 {
	if q.scales.Dtype() == tensor.Float64 {
		return q.scales.Float64s()[k]
	}
	return float64(q.scales.Float32s()[k])
}

// Name returns the layer's name (also the scale node's name).
func (q *QuantizedLinear) Name() string { return q.name }

// Shape returns (in, out).
func (q *QuantizedLinear) Shape() (in, out int) { return q.in, q.out }

// GroupSize returns g, the number of input weights sharing a scale.
func (q *QuantizedLinear) GroupSize() int { return q.group }

// Bits returns the code width.
func (q *QuantizedLinear) Bits() QuantBits { return q.bits }

// Code returns the integer code w̄[i, j], unpacked.
func (q *QuantizedLinear) Code(i, j int) int { return q.codeAt(i*q.out + j) }

// ZeroPoint returns z of the group holding row i of column j (0 when symmetric).
func (q *QuantizedLinear) ZeroPoint(i, j int) int {
	if q.zeros == nil {
		return 0
	}
	return int(q.zeros[(i/q.group)*q.out+j])
}

// Scales returns the (in/g, out) scale tensor itself (not a copy): the layer's only float parameters.
func (q *QuantizedLinear) Scales() *tensor.Dense { return q.scales }

// Param returns the scales as a named *solvers.Param sharing their storage, for QZO or any solver without
// a graph.
func (q *QuantizedLinear) Param() *solvers.Param { return solvers.NewParam(q.name, q.scales, nil) }

// NumWeights returns in·out, the number of weights the codes represent.
func (q *QuantizedLinear) NumWeights() int { return q.in * q.out }

// NumScales returns (in/g)·out, the number of continuous parameters (what QZO perturbs).
func (q *QuantizedLinear) NumScales() int { return (q.in / q.group) * q.out }

// Dequantize returns W = Δ ⊙_group (w̄ − z) as a fresh (in, out) tensor of the scales' dtype.
func (q *QuantizedLinear) Dequantize() *tensor.Dense {
	w := tensor.New(tensor.WithShape(q.in, q.out), tensor.Of(q.scales.Dtype()))
	q.dequantInto(w, q.scales)
	return w
}

func (q *QuantizedLinear) dequantInto(w, s *tensor.Dense) {
	switch w.Dtype() {
	case tensor.Float64:
		dequantKernel(q, graphop.SliceOf[float64](s), graphop.SliceOf[float64](w))
	case tensor.Float32:
		dequantKernel(q, graphop.SliceOf[float32](s), graphop.SliceOf[float32](w))
	}
}

func dequantKernel[T solvers.Float](q *QuantizedLinear, s, w []T) {
	for i := 0; i < q.in; i++ {
		row := (i / q.group) * q.out
		for j := 0; j < q.out; j++ {
			c := q.codeAt(i*q.out + j)
			if q.zeros != nil {
				c -= int(q.zeros[row+j])
			}
			w[i*q.out+j] = s[row+j] * T(c)
		}
	}
}

// scaleGradKernel writes ds[G, j] = Σ_{i∈G} dw[i, j]·(w̄[i, j] − z[G, j]).
func scaleGradKernel[T solvers.Float](q *QuantizedLinear, dw, ds []T) {
	clear(ds)
	for i := 0; i < q.in; i++ {
		row := (i / q.group) * q.out
		for j := 0; j < q.out; j++ {
			c := q.codeAt(i*q.out + j)
			if q.zeros != nil {
				c -= int(q.zeros[row+j])
			}
			ds[row+j] += dw[i*q.out+j] * T(c)
		}
	}
}

// QuantBytes is the memory of a quantized layer.
type QuantBytes struct {
	Codes, Scales, ZeroPoints int64
}

// Total returns Codes + Scales + ZeroPoints.
func (b QuantBytes) Total() int64 { return b.Codes + b.Scales + b.ZeroPoints }

// Bytes returns the layer's storage as held: ⌈in·out·bits/8⌉ bytes of packed codes, (in/g)·out scales at
// the scales' dtype size (4 or 8 bytes) and one byte per zero point (asymmetric only).
func (q *QuantizedLinear) Bytes() QuantBytes {
	return q.BytesWithScaleSize(int(q.scales.Dtype().Size()))
}

// BytesWithScaleSize is Bytes with the scales counted at scaleBytes each (2 for the bf16 scales of the
// paper's accounting).
func (q *QuantizedLinear) BytesWithScaleSize(scaleBytes int) QuantBytes {
	b := QuantBytes{Codes: int64(len(q.codes)), Scales: int64(q.NumScales()) * int64(scaleBytes)}
	if q.zeros != nil {
		b.ZeroPoints = int64(len(q.zeros))
	}
	return b
}

// ScaleNode returns the graph input of g holding the scales (named after the layer, shape (in/g, out),
// sharing the storage of Scales()), creating it on first use.
func (q *QuantizedLinear) ScaleNode(g *G.ExprGraph) *G.Node {
	if n, ok := q.nodes[g]; ok {
		return n
	}
	if q.nodes == nil {
		q.nodes = map[*G.ExprGraph]*G.Node{}
	}
	n := G.NewMatrix(g, q.scales.Dtype(), G.WithShape(q.in/q.group, q.out), G.WithName(q.name), G.WithValue(q.scales))
	q.nodes[g] = n
	return n
}

// Weight returns the dequantised weight node W = Δ ⊙_group (w̄ − z) of shape (in, out) computed from the
// scale node s (usually ScaleNode(g)).
func (q *QuantizedLinear) Weight(s *G.Node) (*G.Node, error) {
	if s == nil {
		return nil, errors.New("zeroth.QuantizedLinear: nil scale node")
	}
	if !s.Shape().Eq(tensor.Shape{q.in / q.group, q.out}) || s.Dtype() != q.scales.Dtype() {
		return nil, errors.Errorf("zeroth.QuantizedLinear %q: scale node %v %v, want %v (%d, %d)", q.name, s.Dtype(), s.Shape(), q.scales.Dtype(), q.in/q.group, q.out)
	}
	return G.ApplyOp(dequantOp{q}, s)
}

// Forward returns y = x·W for x of shape (n, in), dequantising W from the layer's scale node in x's graph.
func (q *QuantizedLinear) Forward(x *G.Node) (*G.Node, error) {
	if x == nil || x.Graph() == nil {
		return nil, errors.New("zeroth.QuantizedLinear: nil input or input without a graph (use g.Constant for constants)")
	}
	w, err := q.Weight(q.ScaleNode(x.Graph()))
	if err != nil {
		return nil, err
	}
	return G.Mul(x, w)
}

// dequantOp: Δ (in/g, out) → W (in, out); dequantGradOp: dW (in, out) → dΔ (in/g, out). The codes live
// in the op (frozen, not a graph value); WriteHash covers name, shape, group, bits, zero-point mode and a
// hash of the packed codes, so layers never merge.
type dequantOp struct{ q *QuantizedLinear }

func writeQHash(h hash.Hash, tag string, q *QuantizedLinear) {
	fmt.Fprintf(h, "%s(%s,%d,%d,g%d,b%d,asym%t,%x)", tag, q.name, q.in, q.out, q.group, q.bits, q.zeros != nil, q.codeHash)
}

func qHash(tag string, q *QuantizedLinear) uint32 {
	h := fnv.New32a()
	writeQHash(h, tag, q)
	return h.Sum32()
}

func (dequantOp) Arity() int { return 1 }
func (dequantOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(a, a)
}
func (op dequantOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.q.in, op.q.out}, nil
}
func (dequantOp) ReturnsPtr() bool         { return false }
func (dequantOp) CallsExtern() bool        { return false }
func (dequantOp) OverwritesInput() int     { return -1 }
func (op dequantOp) WriteHash(h hash.Hash) { writeQHash(h, "QDequant", op.q) }
func (op dequantOp) Hashcode() uint32      { return qHash("QDequant", op.q) }
func (op dequantOp) String() string {
	return fmt.Sprintf("QDequant{%s,int%d,g%d}", op.q.name, op.q.bits, op.q.group)
}

func (op dequantOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }

func (op dequantOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	s, err := qDense("QDequant", in, tensor.Shape{op.q.in / op.q.group, op.q.out})
	if err != nil {
		return nil, err
	}
	w := graphop.Reuse(prealloc, s.Dtype(), tensor.Shape{op.q.in, op.q.out}, in...)
	op.q.dequantInto(w, s)
	return w, nil
}

func (dequantOp) DiffWRT(int) []bool { return []bool{true} }

func (op dequantOp) SymDiff(_ G.Nodes, _, grad *G.Node) (G.Nodes, error) {
	ds, err := G.ApplyOp(dequantGradOp(op), grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{ds}, nil
}

func (op dequantOp) DoDiff(_ G.ExecutionContext, in G.Nodes, out *G.Node) error {
	dw, err := out.Grad()
	if err != nil {
		return err
	}
	v, err := dequantGradOp(op).Do(dw)
	if err != nil {
		return err
	}
	return graphop.AddInto(in[0], v.(*tensor.Dense))
}

type dequantGradOp struct{ q *QuantizedLinear }

func (dequantGradOp) Arity() int { return 1 }
func (dequantGradOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(a, a)
}
func (op dequantGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.q.in / op.q.group, op.q.out}, nil
}
func (dequantGradOp) ReturnsPtr() bool         { return false }
func (dequantGradOp) CallsExtern() bool        { return false }
func (dequantGradOp) OverwritesInput() int     { return -1 }
func (op dequantGradOp) WriteHash(h hash.Hash) { writeQHash(h, "QDequantGrad", op.q) }
func (op dequantGradOp) Hashcode() uint32      { return qHash("QDequantGrad", op.q) }
func (op dequantGradOp) String() string        { return fmt.Sprintf("QDequantGrad{%s}", op.q.name) }

func (op dequantGradOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }

func (op dequantGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	dw, err := qDense("QDequantGrad", in, tensor.Shape{op.q.in, op.q.out})
	if err != nil {
		return nil, err
	}
	ds := graphop.Reuse(prealloc, dw.Dtype(), tensor.Shape{op.q.in / op.q.group, op.q.out}, in...)
	switch dw.Dtype() {
	case tensor.Float64:
		scaleGradKernel(op.q, graphop.SliceOf[float64](dw), graphop.SliceOf[float64](ds))
	case tensor.Float32:
		scaleGradKernel(op.q, graphop.SliceOf[float32](dw), graphop.SliceOf[float32](ds))
	}
	return ds, nil
}

// The scale gradient is linear in dW; second derivatives are not offered.
func (dequantGradOp) DiffWRT(int) []bool { return []bool{false} }
func (dequantGradOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) {
	return nil, nil
}

// qDense checks the single input of a dequantisation op: a float *tensor.Dense of the given size.
func qDense(op string, in []G.Value, want tensor.Shape) (*tensor.Dense, error) {
	if len(in) != 1 {
		return nil, errors.Errorf("%s: want 1 input, got %d", op, len(in))
	}
	d, ok := in[0].(*tensor.Dense)
	if !ok {
		return nil, errors.Errorf("%s: input is %T, want *tensor.Dense", op, in[0])
	}
	if d.RequiresIterator() {
		m, ok := d.Materialize().(*tensor.Dense)
		if !ok {
			return nil, errors.Errorf("%s: cannot materialise a view", op)
		}
		d = m
	}
	if err := graphop.CheckFloat(d.Dtype()); err != nil {
		return nil, errors.Wrap(err, op)
	}
	if d.Shape().TotalSize() != want.TotalSize() {
		return nil, errors.Errorf("%s: input shape %v, want %v", op, d.Shape(), want)
	}
	return d, nil
}
