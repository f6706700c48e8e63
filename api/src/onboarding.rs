//! Adding a merchant to a deployment and rotating its API key: what `acp-admin` does. The key
//! is shown once, here; only its hash is stored.

use checkout::acp::Link;
use checkout::catalog::Catalog;
use checkout::ids::MerchantId;
use checkout::merchant::{Merchant, generate_api_key, hash_api_key};
use checkout::ports::{MerchantStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum OnboardingError {
    #[error("merchant {0} already exists (rotate its key instead)")]
    AlreadyExists(MerchantId),
    #[error("merchant {0} does not exist")]
    NotFound(MerchantId),
    #[error("could not make an API key: {0}")]
    Key(#[from] getrandom::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct NewMerchant {
    pub id: MerchantId,
    pub name: String,
    pub catalog: Catalog,
    /// Orders are linked as `{order_url_base}/{order_id}`.
    pub order_url_base: String,
    /// The legal pages every session links to (`terms_of_use`, `return_policy`, …).
    pub links: Vec<Link>,
}

/// Stores a new merchant; returns it with its API key.
pub async fn create_merchant(
    store: &dyn MerchantStore,
    new: NewMerchant,
) -> Result<(Merchant, String), OnboardingError> {
    if store.merchant(&new.id).await?.is_some() {
        return Err(OnboardingError::AlreadyExists(new.id));
    }
    let api_key = generate_api_key()?;
    let merchant = Merchant::new(new.id, new.name, &api_key, new.catalog, new.order_url_base, new.links);
    match store.put_merchant(&merchant).await {
        Ok(()) => Ok((merchant, api_key)),
        // Created by someone else since the check above.
        Err(StoreError::Changed { .. }) => Err(OnboardingError::AlreadyExists(merchant.id)),
        Err(err) => Err(err.into()),
    }
}

/// Gives the merchant a new API key. The old one stops working once running API instances'
/// merchant caches expire (30 s).
pub async fn rotate_api_key(store: &dyn MerchantStore, id: &MerchantId) -> Result<String, OnboardingError> {
    let api_key = generate_api_key()?;
    // Conditional on the copy read: a change made meanwhile (an order webhook set through the
    // API) is read again and kept, and this key is never undone by an older copy.
    loop {
        let Some(mut merchant) = store.merchant(id).await? else {
            return Err(OnboardingError::NotFound(id.clone()));
        };
        merchant.api_key_hash = hash_api_key(&api_key);
        // A leaked key may have made portal links: they and their sessions end with it.
        merchant.portal_secret = None;
        match store.put_merchant(&merchant).await {
            Ok(()) => return Ok(api_key),
            Err(StoreError::Changed { .. }) => continue,
            Err(err) => return Err(err.into()),
        }
    }
}
