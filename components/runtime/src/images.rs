// TEMPORARY stand-in (never committed) until the pod-images branch lands.
use std::path::{Path, PathBuf};
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ImageError(String);
pub struct ImageStore {
    root: PathBuf,
}
#[derive(Debug, Clone)]
pub struct Image {
    pub id: String,
    pub names: Vec<String>,
    pub layers: Vec<PathBuf>,
    pub config: ImageConfig,
}
#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}
impl ImageStore {
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        Ok(ImageStore { root: root.to_path_buf() })
    }
    pub fn import(&self, _a: impl std::io::Read) -> Result<Vec<Image>, ImageError> {
        Err(ImageError("stand-in".into()))
    }
    pub fn import_dir(&self, _d: &Path) -> Result<Vec<Image>, ImageError> {
        Ok(vec![])
    }
    pub fn resolve(&self, r: &str) -> Result<Option<Image>, ImageError> {
        let dir = self.root.join("flat").join(r.replace('/', "_"));
        Ok(dir.is_dir().then(|| Image {
            id: "sha256:0".into(),
            names: vec![r.into()],
            layers: vec![dir],
            config: ImageConfig { cmd: vec!["sh".into()], ..Default::default() },
        }))
    }
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        Ok(vec![])
    }
}
