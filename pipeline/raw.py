"""Names of the raw files each dataset is made of, shared by the download and prepare stages."""

FER2013_ARCHIVE = "fer2013.tar.gz"
FERPLUS_VOTES = "fer2013new.csv"
MSAMBARE_ARCHIVE = "msambare-fer2013.zip"
APOLLO_ARCHIVE = "apollo2506-facial-recognition-dataset.zip"

RAW_FILES: dict[str, tuple[str, ...]] = {
    "fer2013": (FER2013_ARCHIVE,),
    "ferplus": (FER2013_ARCHIVE, FERPLUS_VOTES),
    "fer2013-images": (MSAMBARE_ARCHIVE,),
    "apollo6": (APOLLO_ARCHIVE,),
}
