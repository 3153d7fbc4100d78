//! Reader for PyTorch `.pth` checkpoints (zip archive + pickle) without Python.
//!
//! Checkpoints come from the internet, so the pickle machine is an allow-list (like PyTorch's
//! `weights_only=True`): only the opcodes a state dict needs, and only the globals
//! `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter`
//! and `torch.{Float,Double,Half,BFloat16,Long,Int}Storage`. Everything else is rejected with an
//! error naming the opcode or global. Every tensor view is checked against its storage's bounds,
//! and all sizes are validated before allocating, so no input can panic, hang or over-allocate.

use crate::safetensors_io::{HostTensor, StateDict};
use crate::ModelError;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::path::Path;
use std::rc::Rc;

/// Largest `data.pkl` accepted (a state dict's pickle is a few MB at most).
const MAX_PICKLE_BYTES: u64 = 256 << 20;
/// Largest memo index / stack depth accepted.
const MAX_MEMO: usize = 1 << 20;

fn err(msg: impl Into<String>) -> ModelError {
    ModelError::Format(msg.into())
}

/// Element type of a storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DType {
    F32,
    F64,
    F16,
    Bf16,
    I64,
    I32,
}

impl DType {
    fn from_storage(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::Bf16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            _ => return None,
        })
    }
    fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::F16 | DType::Bf16 => 2,
        }
    }
}

#[derive(Debug, Clone)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    Storage(DType),
}

#[derive(Debug, Clone)]
struct Storage {
    dtype: DType,
    key: String,
    numel: usize,
}

#[derive(Debug, Clone)]
struct TensorRef {
    storage: Storage,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// Deepest container nesting accepted (a checkpoint needs about 5; the limit keeps the
/// recursive drop of hostile nesting from exhausting the stack).
const MAX_DEPTH: u32 = 32;

/// Items of a container plus its nesting depth.
#[derive(Debug, Clone, Default)]
struct Items<T> {
    items: Vec<T>,
    depth: u32,
}

type ListRef = Rc<RefCell<Items<Val>>>;
type DictRef = Rc<RefCell<Items<(Val, Val)>>>;

#[derive(Debug, Clone)]
enum Val {
    Mark,
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Tuple(Rc<Items<Val>>),
    List(ListRef),
    Dict(DictRef),
    Global(Global),
    Storage(Storage),
    Tensor(Rc<TensorRef>),
}

impl Val {
    fn depth(&self) -> u32 {
        match self {
            Val::Tuple(t) => t.depth,
            Val::List(l) => l.try_borrow().map(|l| l.depth).unwrap_or(MAX_DEPTH),
            Val::Dict(d) => d.try_borrow().map(|d| d.depth).unwrap_or(MAX_DEPTH),
            _ => 0,
        }
    }

    fn tuple(items: Vec<Val>) -> Result<Val, ModelError> {
        let depth = 1 + items.iter().map(Val::depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(err("pickle: containers nested too deeply"));
        }
        Ok(Val::Tuple(Rc::new(Items { items, depth })))
    }

    fn new_dict() -> Val {
        Val::Dict(Rc::new(RefCell::new(Items {
            items: Vec::new(),
            depth: 1,
        })))
    }
}

/// Depth a container reaches when `children` are added to it.
fn grown(depth: u32, children: &[&Val]) -> Result<u32, ModelError> {
    let d = children.iter().map(|v| v.depth() + 1).fold(depth, u32::max);
    if d > MAX_DEPTH {
        return Err(err("pickle: containers nested too deeply"));
    }
    Ok(d)
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Val>,
    memo: HashMap<u32, Val>,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ModelError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| err("pickle: truncated"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ModelError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ModelError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ModelError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn line(&mut self) -> Result<String, ModelError> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| err("pickle: unterminated GLOBAL"))?;
        let s = std::str::from_utf8(&rest[..n])
            .map_err(|_| err("pickle: GLOBAL name not UTF-8"))?
            .to_string();
        self.pos += n + 1;
        Ok(s)
    }
    fn pop(&mut self) -> Result<Val, ModelError> {
        self.stack
            .pop()
            .ok_or_else(|| err("pickle: stack underflow"))
    }
    fn push(&mut self, v: Val) -> Result<(), ModelError> {
        if self.stack.len() >= MAX_MEMO {
            return Err(err("pickle: stack too deep"));
        }
        self.stack.push(v);
        Ok(())
    }
    fn pop_mark(&mut self) -> Result<Vec<Val>, ModelError> {
        let k = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Val::Mark))
            .ok_or_else(|| err("pickle: MARK missing"))?;
        let items = self.stack.split_off(k + 1);
        self.stack.pop();
        Ok(items)
    }
    fn top(&mut self) -> Result<&mut Val, ModelError> {
        self.stack
            .last_mut()
            .ok_or_else(|| err("pickle: stack underflow"))
    }
    fn memo_put(&mut self, idx: u32) -> Result<(), ModelError> {
        if self.memo.len() >= MAX_MEMO {
            return Err(err("pickle: memo too large"));
        }
        let v = self
            .stack
            .last()
            .ok_or_else(|| err("pickle: PUT on empty stack"))?
            .clone();
        self.memo.insert(idx, v);
        Ok(())
    }
    fn memo_get(&mut self, idx: u32) -> Result<(), ModelError> {
        let v = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| err(format!("pickle: memo key {idx} missing")))?;
        self.push(v)
    }
    fn string(&mut self, n: usize) -> Result<(), ModelError> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b)
            .map_err(|_| err("pickle: string not UTF-8"))?
            .to_string();
        self.push(Val::Str(s))
    }
}

fn global(module: &str, name: &str) -> Result<Global, ModelError> {
    match (module, name) {
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Ok(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_parameter") => Ok(Global::RebuildParameter),
        ("torch", s) => DType::from_storage(s)
            .map(Global::Storage)
            .ok_or_else(|| err(format!("pickle: global torch.{s} is not allowed"))),
        _ => Err(err(format!(
            "pickle: global {module}.{name} is not allowed"
        ))),
    }
}

fn as_usize(v: &Val, what: &str) -> Result<usize, ModelError> {
    match v {
        Val::Int(i) if *i >= 0 => Ok(*i as usize),
        _ => Err(err(format!("pickle: {what} must be a non-negative int"))),
    }
}

fn as_usizes(v: &Val, what: &str) -> Result<Vec<usize>, ModelError> {
    match v {
        Val::Tuple(t) => t.items.iter().map(|x| as_usize(x, what)).collect(),
        _ => Err(err(format!("pickle: {what} must be a tuple"))),
    }
}

fn reduce(f: Global, args: Val) -> Result<Val, ModelError> {
    let args = match &args {
        Val::Tuple(t) => &t.items,
        _ => return Err(err("pickle: REDUCE arguments must be a tuple")),
    };
    match f {
        Global::OrderedDict => {
            if !args.is_empty() {
                return Err(err("pickle: OrderedDict with arguments is not supported"));
            }
            Ok(Val::new_dict())
        }
        Global::RebuildTensorV2 => {
            if args.len() < 4 {
                return Err(err(
                    "pickle: _rebuild_tensor_v2 needs (storage, offset, size, stride, ...)",
                ));
            }
            let storage = match &args[0] {
                Val::Storage(s) => s.clone(),
                _ => {
                    return Err(err(
                        "pickle: _rebuild_tensor_v2 argument 0 must be a storage",
                    ))
                }
            };
            let offset = as_usize(&args[1], "tensor offset")?;
            let shape = as_usizes(&args[2], "tensor size")?;
            let stride = as_usizes(&args[3], "tensor stride")?;
            if shape.len() != stride.len() {
                return Err(err("pickle: tensor size and stride ranks differ"));
            }
            // bounds: numel ≤ storage numel (no expanded views), last element inside the storage
            let mut numel: usize = 1;
            let mut last = offset;
            for (&s, &st) in shape.iter().zip(&stride) {
                numel = numel
                    .checked_mul(s)
                    .ok_or_else(|| err("pickle: tensor size overflows"))?;
                if s > 0 {
                    last = (s - 1)
                        .checked_mul(st)
                        .and_then(|v| last.checked_add(v))
                        .ok_or_else(|| err("pickle: tensor extent overflows"))?;
                }
            }
            if numel > storage.numel || (numel > 0 && last >= storage.numel) {
                return Err(err(format!(
                    "tensor view (offset {offset}, size {shape:?}, stride {stride:?}) exceeds storage {} of {} elements",
                    storage.key, storage.numel
                )));
            }
            Ok(Val::Tensor(Rc::new(TensorRef {
                storage,
                offset,
                shape,
                stride,
            })))
        }
        Global::RebuildParameter => match args.first() {
            Some(t @ Val::Tensor(_)) => Ok(t.clone()),
            _ => Err(err(
                "pickle: _rebuild_parameter argument 0 must be a tensor",
            )),
        },
        Global::Storage(_) => Err(err("pickle: storages cannot be called")),
    }
}

fn persistent_load(pid: Val) -> Result<Val, ModelError> {
    let t = match &pid {
        Val::Tuple(t) if t.items.len() == 5 => &t.items,
        _ => {
            return Err(err(
                "pickle: persistent id must be ('storage', type, key, location, numel)",
            ))
        }
    };
    match (&t[0], &t[1], &t[2]) {
        (Val::Str(tag), Val::Global(Global::Storage(dtype)), Val::Str(key)) if tag == "storage" => {
            let numel = as_usize(&t[4], "storage numel")?;
            Ok(Val::Storage(Storage {
                dtype: *dtype,
                key: key.clone(),
                numel,
            }))
        }
        _ => Err(err("pickle: unsupported persistent id")),
    }
}

fn run_pickle(data: &[u8]) -> Result<Val, ModelError> {
    let mut m = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        let op = m.u8()?;
        match op {
            0x80 => {
                let p = m.u8()?;
                if p > 5 {
                    return Err(err(format!("pickle: protocol {p} unsupported")));
                }
            }
            0x95 => {
                m.take(8)?; // FRAME: length only
            }
            b'}' => m.push(Val::new_dict())?,
            b']' => m.push(Val::List(Rc::new(RefCell::new(Items {
                items: Vec::new(),
                depth: 1,
            }))))?,
            b')' => m.push(Val::tuple(Vec::new())?)?,
            b'(' => m.push(Val::Mark)?,
            b'N' => m.push(Val::None)?,
            0x88 | 0x89 => m.push(Val::Bool)?,
            b'J' => {
                let v = m.u32()? as i32;
                m.push(Val::Int(v as i64))?
            }
            b'K' => {
                let v = m.u8()?;
                m.push(Val::Int(v as i64))?
            }
            b'M' => {
                let v = m.u16()?;
                m.push(Val::Int(v as i64))?
            }
            0x8a => {
                let n = m.u8()? as usize;
                let b = m.take(n)?;
                if n > 8 {
                    return Err(err("pickle: LONG1 wider than 64 bits"));
                }
                let mut v: i64 = 0;
                for (i, &x) in b.iter().enumerate() {
                    v |= (x as i64) << (8 * i);
                }
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                m.push(Val::Int(v))?
            }
            b'G' => {
                m.take(8)?;
                m.push(Val::Float)?
            }
            b'X' => {
                let n = m.u32()? as usize;
                m.string(n)?
            }
            0x8c => {
                let n = m.u8()? as usize;
                m.string(n)?
            }
            b't' => {
                let items = m.pop_mark()?;
                m.push(Val::tuple(items)?)?
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if m.stack.len() < n {
                    return Err(err("pickle: stack underflow"));
                }
                let items = m.stack.split_off(m.stack.len() - n);
                if items.iter().any(|v| matches!(v, Val::Mark)) {
                    return Err(err("pickle: MARK inside TUPLEn"));
                }
                m.push(Val::tuple(items)?)?
            }
            b'q' => {
                let i = m.u8()? as u32;
                m.memo_put(i)?
            }
            b'r' => {
                let i = m.u32()?;
                m.memo_put(i)?
            }
            0x94 => {
                let i = m.memo.len() as u32;
                m.memo_put(i)?
            }
            b'h' => {
                let i = m.u8()? as u32;
                m.memo_get(i)?
            }
            b'j' => {
                let i = m.u32()?;
                m.memo_get(i)?
            }
            b's' => {
                let v = m.pop()?;
                let k = m.pop()?;
                match m.top()? {
                    Val::Dict(d) => {
                        let dep = grown(
                            d.try_borrow().map(|d| d.depth).unwrap_or(MAX_DEPTH),
                            &[&k, &v],
                        )?;
                        let mut d = d
                            .try_borrow_mut()
                            .map_err(|_| err("pickle: dict inserted into itself"))?;
                        d.depth = dep;
                        d.items.push((k, v));
                    }
                    _ => return Err(err("pickle: SETITEM on a non-dict")),
                }
            }
            b'u' => {
                let items = m.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(err("pickle: SETITEMS with odd item count"));
                }
                match m.top()? {
                    Val::Dict(d) => {
                        let refs: Vec<&Val> = items.iter().collect();
                        let dep =
                            grown(d.try_borrow().map(|d| d.depth).unwrap_or(MAX_DEPTH), &refs)?;
                        let mut d = d
                            .try_borrow_mut()
                            .map_err(|_| err("pickle: dict inserted into itself"))?;
                        d.depth = dep;
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            d.items.push((k, v));
                        }
                    }
                    _ => return Err(err("pickle: SETITEMS on a non-dict")),
                }
            }
            b'a' => {
                let v = m.pop()?;
                match m.top()? {
                    Val::List(l) => {
                        let dep =
                            grown(l.try_borrow().map(|l| l.depth).unwrap_or(MAX_DEPTH), &[&v])?;
                        let mut l = l
                            .try_borrow_mut()
                            .map_err(|_| err("pickle: list appended to itself"))?;
                        l.depth = dep;
                        l.items.push(v);
                    }
                    _ => return Err(err("pickle: APPEND on a non-list")),
                }
            }
            b'e' => {
                let items = m.pop_mark()?;
                match m.top()? {
                    Val::List(l) => {
                        let refs: Vec<&Val> = items.iter().collect();
                        let dep =
                            grown(l.try_borrow().map(|l| l.depth).unwrap_or(MAX_DEPTH), &refs)?;
                        let mut l = l
                            .try_borrow_mut()
                            .map_err(|_| err("pickle: list appended to itself"))?;
                        l.depth = dep;
                        l.items.extend(items);
                    }
                    _ => return Err(err("pickle: APPENDS on a non-list")),
                }
            }
            b'c' => {
                let module = m.line()?;
                let name = m.line()?;
                m.push(Val::Global(global(&module, &name)?))?
            }
            0x93 => {
                let name = m.pop()?;
                let module = m.pop()?;
                match (module, name) {
                    (Val::Str(a), Val::Str(b)) => m.push(Val::Global(global(&a, &b)?))?,
                    _ => return Err(err("pickle: STACK_GLOBAL needs two strings")),
                }
            }
            b'R' => {
                let args = m.pop()?;
                let f = m.pop()?;
                match f {
                    Val::Global(g) => {
                        let v = reduce(g, args)?;
                        m.push(v)?
                    }
                    _ => return Err(err("pickle: REDUCE on a non-callable")),
                }
            }
            b'b' => {
                // BUILD: only the OrderedDict `_metadata` state of state dicts, ignored.
                let _state = m.pop()?;
                match m.top()? {
                    Val::Dict(_) | Val::Tensor(_) => {}
                    _ => return Err(err("pickle: BUILD only allowed on dicts and tensors")),
                }
            }
            b'Q' => {
                let pid = m.pop()?;
                let v = persistent_load(pid)?;
                m.push(v)?
            }
            b'.' => return m.pop(),
            other => return Err(err(format!("pickle: opcode 0x{other:02x} is not allowed"))),
        }
    }
}

fn read_entry<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    expect: u64,
) -> Result<Vec<u8>, ModelError> {
    let mut f = zip
        .by_name(name)
        .map_err(|e| err(format!("archive entry {name}: {e}")))?;
    if f.size() != expect {
        return Err(err(format!(
            "archive entry {name}: {} bytes, tensor storage needs {expect}",
            f.size()
        )));
    }
    let mut buf = Vec::new();
    f.by_ref()
        .take(expect)
        .read_to_end(&mut buf)
        .map_err(|e| err(format!("archive entry {name}: {e}")))?;
    if buf.len() as u64 != expect {
        return Err(err(format!("archive entry {name}: truncated")));
    }
    Ok(buf)
}

fn decode(bytes: &[u8], dtype: DType) -> HostTensor {
    let c = |n: usize| bytes.chunks_exact(n);
    match dtype {
        DType::F32 => HostTensor::F32 {
            shape: vec![],
            data: c(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        },
        DType::F64 => HostTensor::F32 {
            shape: vec![],
            data: c(8)
                .map(|b| {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
                .collect(),
        },
        DType::F16 => HostTensor::F32 {
            shape: vec![],
            data: c(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        },
        DType::Bf16 => HostTensor::F32 {
            shape: vec![],
            data: c(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        },
        DType::I64 => HostTensor::I64 {
            shape: vec![],
            data: c(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
        },
        DType::I32 => HostTensor::I64 {
            shape: vec![],
            data: c(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                .collect(),
        },
    }
}

fn strided<T: Copy>(src: &[T], t: &TensorRef) -> Vec<T> {
    let numel: usize = t.shape.iter().product();
    let mut out = Vec::with_capacity(numel);
    let mut idx = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let off = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        out.push(src[off]);
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < t.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

/// Parse `.pth` bytes and return the tensors of the dict stored under `key` (e.g. `state_dict`
/// for FakeSTormer checkpoints, `model` for MAE); `None` takes the top-level dict itself.
pub fn parse_pth(bytes: &[u8], key: Option<&str>) -> Result<StateDict, ModelError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| err(format!("not a PyTorch zip checkpoint: {e}")))?;
    let pkl = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_string))
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or_else(|| err("archive has no <folder>/data.pkl"))?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    if let Ok(mut f) = zip.by_name(&format!("{prefix}byteorder")) {
        let mut s = String::new();
        f.by_ref()
            .take(16)
            .read_to_string(&mut s)
            .map_err(|e| err(format!("byteorder: {e}")))?;
        if s.trim() != "little" {
            return Err(err(format!("byteorder {s:?} unsupported (little only)")));
        }
    }
    let data = {
        let f = zip.by_name(&pkl).map_err(|e| err(format!("{pkl}: {e}")))?;
        if f.size() > MAX_PICKLE_BYTES {
            return Err(err(format!("{pkl}: {} bytes is too large", f.size())));
        }
        let mut v = Vec::new();
        f.take(MAX_PICKLE_BYTES)
            .read_to_end(&mut v)
            .map_err(|e| err(format!("{pkl}: {e}")))?;
        v
    };
    let root = run_pickle(&data)?;
    let dict = |v: &Val| -> Result<Vec<(Val, Val)>, ModelError> {
        match v {
            Val::Dict(d) => Ok(d
                .try_borrow()
                .map_err(|_| err("checkpoint dict is busy"))?
                .items
                .clone()),
            _ => Err(err("checkpoint root is not a dict")),
        }
    };
    let mut entries = dict(&root)?;
    if let Some(k) = key {
        let found = entries
            .iter()
            .find(|(kk, _)| matches!(kk, Val::Str(s) if s == k))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| err(format!("checkpoint has no key {k:?}")))?;
        entries = dict(&found)?;
    }
    let mut storages: BTreeMap<String, HostTensor> = BTreeMap::new();
    let mut out = StateDict::new();
    for (k, v) in entries {
        let name = match k {
            Val::Str(s) => s,
            _ => return Err(err("state dict key is not a string")),
        };
        let t = match v {
            Val::Tensor(t) => t,
            _ => return Err(err(format!("state dict entry {name} is not a tensor"))),
        };
        let st = &t.storage;
        if !storages.contains_key(&st.key) {
            let nbytes = (st.numel as u64)
                .checked_mul(st.dtype.size() as u64)
                .ok_or_else(|| err(format!("storage {} size overflows", st.key)))?;
            let raw = read_entry(&mut zip, &format!("{prefix}data/{}", st.key), nbytes)?;
            storages.insert(st.key.clone(), decode(&raw, st.dtype));
        }
        let tensor = match &storages[&st.key] {
            HostTensor::F32 { data, .. } => HostTensor::F32 {
                shape: t.shape.clone(),
                data: strided(data, &t),
            },
            HostTensor::I64 { data, .. } => HostTensor::I64 {
                shape: t.shape.clone(),
                data: strided(data, &t),
            },
        };
        out.insert(name, tensor);
    }
    Ok(out)
}

/// Read a `.pth` file; see [`parse_pth`].
pub fn read_pth(path: &Path, key: Option<&str>) -> Result<StateDict, ModelError> {
    let bytes =
        std::fs::read(path).map_err(|e| ModelError::Io(format!("{}: {e}", path.display())))?;
    parse_pth(&bytes, key).map_err(|e| ModelError::Format(format!("{}: {e}", path.display())))
}
