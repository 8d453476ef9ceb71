//! A real browser for UI tests: Debian's headless Chromium driven by its `chromedriver`
//! over WebDriver (the `fantoccini` client). Each [`Browser`] has its own chromedriver
//! process, port and profile, so tests do not share cookies.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::tcp::{free_loopback_address, listening};
use crate::wait::eventually;

/// How long a page has to show what a test waits for.
pub const PAGE_WAIT: Duration = Duration::from_secs(30);

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// Where screenshots go: `target/screenshots` in the workspace (CI keeps that directory
/// as an artifact).
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window of 1400×1000.
    pub async fn start() -> anyhow::Result<Browser> {
        let address = free_loopback_address()?;
        let driver = Command::new("chromedriver")
            .arg(format!("--port={}", address.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run chromedriver (Debian's chromium-driver package)")?;
        listening(address, "chromedriver").await?;
        let profile = tempfile::tempdir()?;
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1400,1000", "--enable-precise-memory-info",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://{address}"))
            .await
            .context("cannot open a Chromium session")?;
        Ok(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        Ok(self.client.goto(url).await?)
    }

    /// The first element `locator` finds, once there is one (within [`PAGE_WAIT`]).
    pub async fn element(&self, locator: Locator<'_>) -> anyhow::Result<Element> {
        let what = format!("{locator:?}");
        match self
            .client
            .wait()
            .at_most(PAGE_WAIT)
            .for_element(locator)
            .await
        {
            Ok(element) => Ok(element),
            Err(error) => Err(anyhow::Error::new(error).context(format!(
                "no element {what}; the page: {}",
                self.describe().await
            ))),
        }
    }

    /// The text of the first element matching `css`, once there is one.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        self.with_element(
            Locator::Css(css),
            |element| async move { element.text().await },
        )
        .await
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.click_on(Locator::Css(css)).await
    }

    /// Clicks the link whose text is `text`.
    pub async fn click_link(&self, text: &str) -> anyhow::Result<()> {
        self.click_on(Locator::LinkText(text)).await
    }

    async fn click_on(&self, locator: Locator<'_>) -> anyhow::Result<()> {
        self.with_element(locator, |element| async move { element.click().await })
            .await
    }

    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        self.with_element(Locator::Css(css), |element| async move {
            element.clear().await?;
            element.send_keys(text).await
        })
        .await
    }

    /// Does `act` to what `locator` finds. A live page may redraw the element between
    /// finding it and acting on it (a list read again, a header drawn for a new session):
    /// then it is found again, a few times at most.
    async fn with_element<T, F, Fut>(&self, locator: Locator<'_>, act: F) -> anyhow::Result<T>
    where
        F: Fn(Element) -> Fut,
        Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match act(self.element(locator).await?).await {
                Err(fantoccini::error::CmdError::Standard(error))
                    if error.error == fantoccini::error::ErrorStatus::StaleElementReference
                        && attempts < 5 => {}
                result => return Ok(result?),
            }
        }
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> anyhow::Result<usize> {
        Ok(self.client.find_all(Locator::Css(css)).await?.len())
    }

    /// Runs `script` in the page (a function body; `arguments` are `args`).
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        Ok(self.client.execute(script, args).await?)
    }

    /// Waits until `script` returns something other than `null`/`false`, and returns it.
    pub async fn until(&self, what: &str, script: &str) -> anyhow::Result<Value> {
        let found = eventually(PAGE_WAIT, what, || async {
            match self.eval(script, vec![]).await {
                Ok(Value::Null | Value::Bool(false)) | Err(_) => None,
                Ok(value) => Some(value),
            }
        })
        .await;
        match found {
            Ok(value) => Ok(value),
            Err(error) => Err(error.context(format!("the page: {}", self.describe().await))),
        }
    }

    /// Where the browser is, what the page says and what it loaded (each file's HTTP status,
    /// 0 for none, and time), for failure messages.
    pub async fn describe(&self) -> String {
        let script = "return location.href + ' (' + document.readyState + ') | '
            + document.body.innerText.slice(0, 3000) + ' | loaded: '
            + performance.getEntriesByType('resource').map((e) =>
                `${e.name.replace(location.origin, '')} ${e.responseStatus} ${Math.round(e.duration)} ms`)
              .join(', ');";
        match self.eval(script, vec![]).await {
            Ok(Value::String(text)) => text,
            other => format!("{other:?}"),
        }
    }

    /// The text of an open `alert`/`confirm` dialog, if there is one.
    pub async fn dialog(&self) -> Option<String> {
        self.client.get_alert_text().await.ok()
    }

    /// Signs in through the sign-in page and waits for the fleet page.
    pub async fn sign_in(&self, base: &str, email: &str, password: &str) -> anyhow::Result<()> {
        self.goto(&format!("{base}/#/signin")).await?;
        self.type_into("#email", email).await?;
        self.type_into("#password", password).await?;
        self.click("#sign-in").await?;
        self.text("#who-email").await?;
        Ok(())
    }

    /// Saves a PNG of the window as `<name>.png` in [`screenshot_dir`].
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}
