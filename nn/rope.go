package nn

import (
	"fmt"
	"hash"
	"math"

	"github.com/chewxy/hm"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/internal/graphop"
)

// DefaultRoPEBase is RoFormer's base θ = 10000.
const DefaultRoPEBase = 10000.0

// Pairing says which features RoPE rotates together.
type Pairing int

const (
	// Interleaved rotates the pairs (2k, 2k+1): RoFormer's formulation and DeepSeek's reference code
	// (torch.view_as_complex over adjacent features).
	Interleaved Pairing = iota
	// RotateHalf rotates the pairs (k, k+d/2): Hugging Face Llama's (and GPT-NeoX's) "rotate_half".
	RotateHalf
)

func (p Pairing) String() string {
	switch p {
	case Interleaved:
		return "interleaved"
	case RotateHalf:
		return "rotate-half"
	}
	return fmt.Sprintf("Pairing(%d)", int(p))
}

// index returns the two features of pair k in a vector of length d.
func (p Pairing) index(k, half int) (int, int) {
	if p == RotateHalf {
		return k, k + half
	}
	return 2 * k, 2*k + 1
}

// RoPE holds the precomputed cos/sin table of rotary position embeddings (Su et al., "RoFormer: Enhanced
// Transformer with Rotary Position Embedding", 2021) for feature size Dim and positions [0, MaxPos):
// position p rotates pair k by the angle p·ω_k with ω_k = Base^(−2k/Dim),
//
//	x′_i = x_i cos(pω_k) − x_j sin(pω_k),   x′_j = x_i sin(pω_k) + x_j cos(pω_k),
//
// where (i, j) = (2k, 2k+1) for Interleaved and (k, k+Dim/2) for RotateHalf. ⟨R_p q, R_s k⟩ depends only on
// s − p. The two pairings give the same attention scores after a fixed permutation of the projection's
// outputs (PairingPermutation), but a checkpoint is only correct with the pairing it was trained with.
//
// A RoPE is immutable after NewRoPE and safe to share between graphs and goroutines.
type RoPE struct {
	dim, maxPos int
	base        float64
	pairing     Pairing
	cos, sin    []float64 // (maxPos, dim/2), row-major
	cos32       []float32
	sin32       []float32
}

// NewRoPE precomputes the table for feature size dim (even) and maxPos positions, with base θ (≤ 0 means
// DefaultRoPEBase) and the given pairing. Angles are computed in float64; the float32 table is a rounding
// of the float64 one.
func NewRoPE(dim, maxPos int, base float64, pairing Pairing) (*RoPE, error) {
	if dim <= 0 || dim%2 != 0 {
		return nil, errors.Errorf("nn.RoPE: dim must be positive and even, got %d", dim)
	}
	if maxPos <= 0 {
		return nil, errors.Errorf("nn.RoPE: maxPos must be positive, got %d", maxPos)
	}
	if base <= 0 {
		base = DefaultRoPEBase
	}
	if math.IsInf(base, 0) || math.IsNaN(base) || base == 1 {
		return nil, errors.Errorf("nn.RoPE: bad base %v", base)
	}
	if pairing != Interleaved && pairing != RotateHalf {
		return nil, errors.Errorf("nn.RoPE: unknown pairing %v", pairing)
	}
	half := dim / 2
	r := &RoPE{dim: dim, maxPos: maxPos, base: base, pairing: pairing,
		cos: make([]float64, maxPos*half), sin: make([]float64, maxPos*half),
		cos32: make([]float32, maxPos*half), sin32: make([]float32, maxPos*half)}
	for k := 0; k < half; k++ {
		w := math.Pow(base, -2*float64(k)/float64(dim))
		for p := 0; p < maxPos; p++ {
			s, c := math.Sincos(float64(p) * w)
			r.cos[p*half+k], r.sin[p*half+k] = c, s
			r.cos32[p*half+k], r.sin32[p*half+k] = float32(c), float32(s)
		}
	}
	return r, nil
}

// Dim returns the rotated feature size d.
func (r *RoPE) Dim() int { return r.dim }

// MaxPos returns the number of positions in the table.
func (r *RoPE) MaxPos() int { return r.maxPos }

// Base returns θ.
func (r *RoPE) Base() float64 { return r.base }

// Pairing returns the pairing.
func (r *RoPE) Pairing() Pairing { return r.pairing }

// Apply rotates x of shape (..., T, d) — T, the sequence, is the second-to-last axis, d the last; leading
// axes (batch, heads) share the positions — so that row t gets position offset+t. A non-zero offset is for
// cached decoding, where the new tokens follow offset cached ones. offset+T must not exceed MaxPos. The
// offset is a parameter of the graph op: ops with different offsets are different nodes.
//
// It is one custom op, float32 or float64, whose gradient is the rotation by the opposite angle
// (dx = R_pᵀ dy).
func (r *RoPE) Apply(x *G.Node, offset int) (*G.Node, error) {
	if err := r.checkNode(x); err != nil {
		return nil, err
	}
	T := x.Shape()[x.Dims()-2]
	if offset < 0 || offset+T > r.maxPos {
		return nil, errors.Errorf("nn.RoPE: positions [%d, %d) outside the table [0, %d)", offset, offset+T, r.maxPos)
	}
	return G.ApplyOp(&ropeOp{r: r, dims: x.Dims(), offset: offset}, x)
}

// ApplyAt is Apply with the positions given by an Int vector node of length T (row t gets position
// positions[t]), so one compiled graph serves every decoding step: set the positions with gorgonia.Let
// before each run. Positions outside [0, MaxPos) are an error at run time.
func (r *RoPE) ApplyAt(x, positions *G.Node) (*G.Node, error) {
	if err := r.checkNode(x); err != nil {
		return nil, err
	}
	if positions == nil || positions.Dtype() != tensor.Int || positions.Dims() != 1 {
		return nil, errors.New("nn.RoPE: positions must be an Int vector node")
	}
	if T := x.Shape()[x.Dims()-2]; positions.Shape()[0] != T {
		return nil, errors.Errorf("nn.RoPE: %d positions for %d rows", positions.Shape()[0], T)
	}
	return G.ApplyOp(&ropeOp{r: r, dims: x.Dims(), byInput: true}, x, positions)
}

func (r *RoPE) checkNode(x *G.Node) error {
	if x == nil {
		return errors.New("nn.RoPE: nil input")
	}
	if x.Dims() < 2 || x.Shape()[x.Dims()-1] != r.dim {
		return errors.Errorf("nn.RoPE: want x of shape (..., T, %d), got %v", r.dim, x.Shape())
	}
	return errors.Wrap(graphop.CheckFloat(x.Dtype()), "nn.RoPE")
}

// Rotate applies the rotation outside any graph (for a KV cache): x holds rows of d features laid out as
// (..., T, d), and row t of each (T, d) block gets position pos[t]. With inverse it rotates by the opposite
// angle. x is modified in place.
func Rotate[T ~float32 | ~float64](r *RoPE, x []T, pos []int, inverse bool) error {
	if len(pos) == 0 || len(x)%(len(pos)*r.dim) != 0 {
		return errors.Errorf("nn.RoPE: %d values are not a multiple of %d positions × %d features", len(x), len(pos), r.dim)
	}
	for _, p := range pos {
		if p < 0 || p >= r.maxPos {
			return errors.Errorf("nn.RoPE: position %d outside the table [0, %d)", p, r.maxPos)
		}
	}
	ropeKernel(r, x, x, pos, inverse)
	return nil
}

// PairingPermutation returns perm such that rotating with RotateHalf the vector v′ with v′[i] = v[perm[i]]
// gives, permuted the same way, the Interleaved rotation of v: Interleaved(v)[perm[i]] = RotateHalf(v′)[i].
// perm lists the even features then the odd ones. Permuting the columns of W_Q and W_K this way converts
// a checkpoint between the two pairings.
func PairingPermutation(d int) []int {
	perm := make([]int, d)
	for k := 0; k < d/2; k++ {
		perm[k], perm[k+d/2] = 2*k, 2*k+1
	}
	return perm
}

// ropeKernel rotates src into dst (which may be src). x is (blocks, T, d), T = len(pos).
func ropeKernel[T float](r *RoPE, src, dst []T, pos []int, inverse bool) {
	var cos, sin []T
	switch any(src).(type) {
	case []float64:
		cos, sin = any(r.cos).([]T), any(r.sin).([]T)
	default:
		cos, sin = any(r.cos32).([]T), any(r.sin32).([]T)
	}
	d, half, nT := r.dim, r.dim/2, len(pos)
	rows := len(src) / d
	parallelRows(rows, d, func(_, lo, hi int) {
		for row := lo; row < hi; row++ {
			p := pos[row%nT]
			cr, sr := cos[p*half:(p+1)*half], sin[p*half:(p+1)*half]
			s, o := src[row*d:(row+1)*d], dst[row*d:(row+1)*d]
			for k := 0; k < half; k++ {
				i, j := r.pairing.index(k, half)
				c, sn := cr[k], sr[k]
				if inverse {
					sn = -sn
				}
				a, b := s[i], s[j]
				o[i] = a*c - b*sn
				o[j] = a*sn + b*c
			}
		}
	})
}

// ropeOp: x (..., T, d) [, positions Int (T)] → x rotated. inverse rotates by −pω (the gradient).
type ropeOp struct {
	r       *RoPE
	dims    int
	offset  int
	byInput bool
	inverse bool
}

func (op *ropeOp) Arity() int {
	if op.byInput {
		return 2
	}
	return 1
}
func (op *ropeOp) Type() hm.Type {
	x := G.TensorType{Dims: op.dims, Of: hm.TypeVariable('a')}
	if op.byInput {
		return hm.NewFnType(x, G.TensorType{Dims: 1, Of: tensor.Int}, x)
	}
	return hm.NewFnType(x, x)
}
func (op *ropeOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	return in[0].(tensor.Shape).Clone(), nil
}
func (op *ropeOp) ReturnsPtr() bool      { return false }
func (op *ropeOp) CallsExtern() bool     { return false }
func (op *ropeOp) OverwritesInput() int  { return -1 }
func (op *ropeOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op *ropeOp) Hashcode() uint32      { return hashOf(op) }
func (op *ropeOp) String() string {
	pos := fmt.Sprintf("offset=%d", op.offset)
	if op.byInput {
		pos = "positions=input"
	}
	return fmt.Sprintf("RoPE{d=%d,maxPos=%d,base=%v,%v,%s,inverse=%v,dims=%d}",
		op.r.dim, op.r.maxPos, op.r.base, op.r.pairing, pos, op.inverse, op.dims)
}

func (op *ropeOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }

func (op *ropeOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	if len(in) != op.Arity() {
		return nil, errors.Errorf("%v: want %d inputs, got %d", op, op.Arity(), len(in))
	}
	x, err := graphop.DenseOf(in[0])
	if err != nil {
		return nil, errors.Wrapf(err, "%v", op)
	}
	if err := graphop.CheckFloat(x.Dtype()); err != nil {
		return nil, errors.Wrapf(err, "%v", op)
	}
	sh := x.Shape()
	if sh.Dims() < 2 || sh[sh.Dims()-1] != op.r.dim {
		return nil, errors.Errorf("%v: bad input shape %v", op, sh)
	}
	nT := sh[sh.Dims()-2]
	pos, err := op.positions(in, nT)
	if err != nil {
		return nil, err
	}
	y := graphop.Reuse(prealloc, x.Dtype(), sh, in...)
	switch x.Dtype() {
	case tensor.Float64:
		ropeKernel(op.r, graphop.SliceOf[float64](x), graphop.SliceOf[float64](y), pos, op.inverse)
	case tensor.Float32:
		ropeKernel(op.r, graphop.SliceOf[float32](x), graphop.SliceOf[float32](y), pos, op.inverse)
	}
	return y, nil
}

func (op *ropeOp) positions(in []G.Value, nT int) ([]int, error) {
	pos := make([]int, nT)
	if !op.byInput {
		for t := range pos {
			pos[t] = op.offset + t
		}
		if op.offset < 0 || op.offset+nT > op.r.maxPos {
			return nil, errors.Errorf("%v: positions [%d, %d) outside the table", op, op.offset, op.offset+nT)
		}
		return pos, nil
	}
	pt, ok := in[1].(*tensor.Dense)
	if !ok || pt.Dtype() != tensor.Int || pt.Shape().TotalSize() != nT {
		return nil, errors.Errorf("%v: positions must be an Int vector of length %d, got %T", op, nT, in[1])
	}
	if pt.RequiresIterator() {
		pt = pt.Materialize().(*tensor.Dense)
	}
	copy(pos, pt.Data().([]int))
	for _, p := range pos {
		if p < 0 || p >= op.r.maxPos {
			return nil, errors.Errorf("%v: position %d outside the table [0, %d)", op, p, op.r.maxPos)
		}
	}
	return pos, nil
}

func (op *ropeOp) DiffWRT(n int) []bool {
	if n == 2 {
		return []bool{true, false}
	}
	return []bool{true}
}

// SymDiff: the rotation is orthogonal, so its gradient is the rotation by the opposite angle, itself a
// ropeOp (which makes higher derivatives work too).
func (op *ropeOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	inv := *op
	inv.inverse = !op.inverse
	children := G.Nodes{grad}
	if op.byInput {
		children = append(children, in[1])
	}
	dx, err := G.ApplyOp(&inv, children...)
	if err != nil {
		return nil, err
	}
	if op.byInput {
		return G.Nodes{dx, nil}, nil
	}
	return G.Nodes{dx}, nil
}

func (op *ropeOp) DoDiff(_ G.ExecutionContext, in G.Nodes, out *G.Node) error {
	dy, err := out.Grad()
	if err != nil {
		return err
	}
	inv := *op
	inv.inverse = !op.inverse
	vals := []G.Value{dy}
	if op.byInput {
		vals = append(vals, in[1].Value())
	}
	v, err := inv.Do(vals...)
	if err != nil {
		return err
	}
	return graphop.AddInto(in[0], v.(*tensor.Dense))
}
