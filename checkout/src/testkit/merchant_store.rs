use super::merchant;
use crate::merchant::hash_api_key;
use crate::ports::Backend;

pub async fn merchants_are_found_by_id_and_key_hash(backend: &Backend) {
    let m = merchant();
    backend.merchants.put_merchant(&m).await.unwrap();
    assert_eq!(backend.merchants.merchant(&m.id).await.unwrap(), Some(m.clone()));
    assert_eq!(
        backend
            .merchants
            .merchant_by_api_key_hash(&m.api_key_hash)
            .await
            .unwrap(),
        Some(m.clone())
    );
    assert_eq!(
        backend
            .merchants
            .merchant_by_api_key_hash(&hash_api_key("nobody's key"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(backend.merchants.merchant(&merchant().id).await.unwrap(), None);
}

pub async fn replacing_a_merchant_key_retires_the_old_one(backend: &Backend) {
    let mut m = merchant();
    backend.merchants.put_merchant(&m).await.unwrap();
    let old_hash = m.api_key_hash.clone();
    m.api_key_hash = hash_api_key("rotated key");
    m.name = "Renamed".to_owned();
    backend.merchants.put_merchant(&m).await.unwrap();
    assert_eq!(
        backend.merchants.merchant_by_api_key_hash(&old_hash).await.unwrap(),
        None
    );
    let found = backend
        .merchants
        .merchant_by_api_key_hash(&m.api_key_hash)
        .await
        .unwrap();
    assert_eq!(found.map(|f| f.name), Some("Renamed".to_owned()));
}
