//! Where each field of a YAML document stands, so that errors found after
//! deserializing (duplicates, overlaps) can still name a line and column.
//! serde_yaml reports positions only for errors raised while it parses.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Positions of the values of a document's first YAML document, keyed by
/// paths written as in error messages: `nodes[1].name`, `networking.podSubnet`.
#[derive(Debug, Default)]
pub struct SourceMap {
    values: HashMap<String, Position>,
}

impl SourceMap {
    /// Maps `text`; a document that does not parse maps to nothing (serde_yaml
    /// reports its syntax error with a position of its own).
    pub fn of(text: &str) -> Self {
        let mut walker = Walker::default();
        let _ = Parser::new_from_str(text).load(&mut walker, false);
        SourceMap { values: walker.values }
    }

    /// The position of the value at `path`, or of its nearest mapped parent.
    pub fn position(&self, path: &str) -> Position {
        let mut path = path;
        loop {
            if let Some(p) = self.values.get(path) {
                return *p;
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None => return self.values.get("").copied().unwrap_or(Position { line: 1, column: 1 }),
            }
        }
    }
}

enum Frame {
    Mapping { path: String, key: Option<String> },
    Sequence { path: String, next: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    values: HashMap<String, Position>,
    done: bool,
}

impl Walker {
    /// The path of the node that starts now, or None when it is a mapping key.
    fn next_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Sequence { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Mapping { path, key }) => key.take().map(|k| if path.is_empty() { k } else { format!("{path}.{k}") }),
        }
    }

    fn record(&mut self, path: &str, mark: Marker) {
        // yaml-rust2 counts lines from 1 and columns from 0.
        let pos = Position { line: mark.line(), column: mark.col() + 1 };
        self.values.entry(path.to_string()).or_insert(pos);
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.done {
            return;
        }
        match ev {
            Event::Scalar(value, ..) => match self.next_path() {
                Some(path) => self.record(&path, mark),
                None => {
                    if let Some(Frame::Mapping { key, .. }) = self.stack.last_mut() {
                        *key = Some(value);
                    }
                }
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A collection used as a mapping key has no path; name it `?`.
                let path = self.next_path().unwrap_or_else(|| "?".to_string());
                self.record(&path, mark);
                self.stack.push(if matches!(ev, Event::MappingStart(..)) { Frame::Mapping { path, key: None } } else { Frame::Sequence { path, next: 0 } });
            }
            Event::Alias(_) => {
                self.next_path();
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::DocumentEnd => self.done = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_nested_paths_to_lines() {
        let text = "a: 1\nnodes:\n  - name: x\n  - name: y\n    labels: {k: v}\n";
        let map = SourceMap::of(text);
        assert_eq!(map.position("a"), Position { line: 1, column: 4 });
        assert_eq!(map.position("nodes[1].name"), Position { line: 4, column: 11 });
        assert_eq!(map.position("nodes[1].labels.k").line, 5);
        // Unknown leaves fall back to their parent.
        assert_eq!(map.position("nodes[1].missing").line, 4);
    }
}
